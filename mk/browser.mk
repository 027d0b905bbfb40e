# Headless Chromium for tests/integration/test_report_browser.py (the report looked at in a real
# browser, over the DevTools protocol: no driver, no browser download from a CDN). The browser comes
# from the distribution: Debian's `chromium` package, installed with apt when it is missing and this
# runs as root with apt-get available. Anywhere else (or if apt cannot reach its mirror) the target
# says so and the browser test skips, naming the reason; CHROMIUM=/path/to/chrome points at another.
.PHONY: browser
browser: ## headless Chromium for the report's browser test (Debian's chromium via apt when root)
	@if [ -n "$$CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		echo "[browser] chromium: $$(command -v chromium || command -v chromium-browser || echo $$CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "[browser] installing Debian's chromium (apt-get, about 100 MB)"; \
		( apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
		  || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } ) \
		&& echo "[browser] chromium: $$(command -v chromium)" \
		|| echo "[browser] WARNING: apt-get could not install chromium; the report's browser test will skip"; \
	else \
		echo "[browser] no chromium and no root apt-get: the report's browser test will skip (set CHROMIUM=...)"; \
	fi

test-deps:: browser
