"""index.html and an image page in headless Chromium: sorting and filtering change the DOM as a
person would see it, nothing is loaded from anywhere, no console error, no injected script runs,
and without JavaScript the table stays in its static, most-urgent-first order.

Needs a Chromium binary (Debian: `apt-get install chromium`; or $CHROMIUM). It is not part of the
pinned environment, so the tests skip, saying so, where there is none.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ecs_scan_operator.core.model import (
    Assessment,
    Finding,
    ImageResult,
    ImageUse,
    RuntimeContext,
    Severity,
    Signals,
)
from ecs_scan_operator.core.policy import PolicyRef
from ecs_scan_operator.core.report import image_page_key, image_report_key, render_html, render_images
from tests.support.browser import Page, chromium, find_chromium
from tests.unit.test_report import _result
from tests.unit.test_report_pages import finding, image

BROWSER = find_chromium()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.tools,
    pytest.mark.skipif(
        BROWSER is None,
        reason="no Chromium on this machine (apt-get install chromium, or set CHROMIUM=/path/to/chrome)",
    ),
]
POLICY = PolicyRef(namespace="team-a", name="nightly")
XSS = "<img src=x onerror=alert(1)>"


def _f(vid: str, sev: Severity, prio: str = "", **sig: Any) -> Finding:
    overdue = sig.pop("overdue", False)
    due = date(2026, 1, 1) if prio else None
    return finding(vid, severity=sev, assessment=Assessment(priority=prio, due=due, overdue=overdue),
                   signals=Signals(**sig))  # fmt: skip


def _fleet() -> list[ImageResult]:
    def acct(account: str) -> list[ImageUse]:
        return [ImageUse("svc", 1, "app", "arn", account=account)]

    kev = _f("CVE-2024-1", Severity.HIGH, "P1", kev=True)
    hostile = finding("CVE-2024-6", package=XSS, url="javascript:alert(2)", title="<script>alert(3)</script>")
    return [
        image("pay/api", findings=[kev, _f("CVE-2024-2", Severity.CRITICAL, "P2")],
              uses=acct("111111111111")),
        image("pay/worker", findings=[_f("CVE-2024-3", Severity.CRITICAL, "P2", overdue=True)],
              uses=acct("222222222222")),
        image("ord/web", findings=[_f("CVE-2024-4", Severity.MEDIUM, "P3")], uses=acct("111111111111"),
              runtime=RuntimeContext(running_tasks=1), redeploy_needed=True),
        image("ord/zzz", findings=[finding("CVE-2024-5", severity=Severity.LOW, fixed_version="")],
              uses=acct("222222222222")),
        image(f"hostile/{XSS}", findings=[hostile], uses=acct("333333333333")),
        image("clean/app", findings=[]),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    images = _fleet()
    for obj in render_images(str(root), POLICY, images, "r1", {}):
        path = Path(obj.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(obj.body)
    start = len(str(root)) + 1
    links = {i.ref.raw: image_report_key(str(root), i)[start:] for i in images if i.affected}
    pages = {i.ref.raw: image_page_key(str(root), i)[start:] for i in images if i.affected}
    (root / "index.html").write_text(render_html(images, _result(), links, [], pages=pages), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    assert BROWSER is not None
    with chromium(BROWSER) as p:
        yield p


def _visible(page: Page) -> list[str]:
    return list(
        page.js(
            "Array.from(document.querySelectorAll('#images tbody tr')).filter(r => !r.hidden)"
            ".map(r => r.cells[1].querySelector('a,span').textContent)"
        )
    )


def _click_head(page: Page, name: str) -> None:
    page.js(
        f"Array.from(document.querySelectorAll('#images th')).find(h => h.textContent === {name!r}).click()"
    )


def _check(page: Page, ident: str) -> None:
    page.js(f"document.getElementById({ident!r}).click()")


def _clean(page: Page, root: Path) -> None:
    assert page.log.errors() == [], page.log.errors()
    assert page.log.dialogs == []  # no injected script ran
    outside = [u for u in page.log.requests if not u.startswith(root.as_uri())]
    assert outside == [], outside  # nothing loaded from anywhere but the report itself


STATIC = ["pay/api:1", "pay/worker:1", "ord/web:1", f"hostile/{XSS}:1", "ord/zzz:1", "clean/app:1"]


def test_index_sorts_and_filters_in_the_browser(page: Page, report: Path) -> None:
    page.open((report / "index.html").as_uri())
    # Static order: most urgent priority first, then most severe; unprioritised and unaffected last.
    assert _visible(page) == STATIC
    assert page.js("document.getElementById('filters').hidden") is False
    assert page.js("document.getElementById('shown').textContent") == "showing 6 of 6"

    _click_head(page, "Image")
    assert _visible(page) == sorted(STATIC, key=lambda s: s.lower())  # localeCompare: case-insensitive
    _click_head(page, "Image")
    assert _visible(page) == sorted(STATIC, key=lambda s: s.lower(), reverse=True)
    _click_head(page, "Critical")
    assert _visible(page)[-2:] in (["pay/api:1", "pay/worker:1"], ["pay/worker:1", "pay/api:1"])
    assert page.js("document.querySelector('#images th[aria-sort]').textContent") == "Critical"
    _click_head(page, "Priority")
    assert _visible(page)[:3] == ["pay/api:1", "pay/worker:1", "ord/web:1"]

    _check(page, "f-kev")
    assert _visible(page) == ["pay/api:1"]
    _check(page, "f-kev")
    _check(page, "f-overdue")
    assert _visible(page) == ["pay/worker:1"]
    _check(page, "f-overdue")
    _check(page, "f-redeploy")
    assert _visible(page) == ["ord/web:1"]
    _check(page, "f-redeploy")
    _check(page, "f-fix")
    assert set(_visible(page)) == {"pay/api:1", "pay/worker:1", "ord/web:1", f"hostile/{XSS}:1"}
    page.js("const s = document.getElementById('f-account'); s.value = '222222222222';"
            "s.dispatchEvent(new Event('change'))")  # fmt: skip
    assert _visible(page) == ["pay/worker:1"]  # fix available AND account
    assert page.js("document.getElementById('shown').textContent") == "showing 1 of 6"
    _check(page, "f-fix")
    assert sorted(_visible(page)) == ["ord/zzz:1", "pay/worker:1"]
    _clean(page, report)


def test_image_page_renders_without_script_or_outside_requests(page: Page, report: Path) -> None:
    page.open((report / "index.html").as_uri())
    href = page.js("document.querySelector('#images tbody tr a').href")
    page.open(href)
    assert page.js("document.querySelectorAll('script').length") == 0
    assert page.js("document.querySelector('h1').textContent") == "pay/api:1"
    rows = page.js(
        "Array.from(document.querySelectorAll('table')[0].tBodies[0].rows).map(r => r.cells[1].innerText)"
    )
    assert [r.split("\n")[0] for r in rows] == ["CVE-2024-1", "CVE-2024-2"]  # P1 first
    back = page.js("document.querySelector('a').href")
    assert back == (report / "index.html").as_uri()
    json_link = page.js("document.querySelectorAll('a')[1].href")
    assert Path(json_link.removeprefix("file://")).is_file()
    _clean(page, report)


def test_hostile_page_runs_nothing(page: Page, report: Path) -> None:
    hostile = next(p for p in (report / "images").rglob("*.html") if "hostile" in str(p))
    page.open(hostile.as_uri())
    assert page.js("document.querySelectorAll('img, script').length") == 0
    assert XSS in page.js("document.body.innerText")
    links = page.js("Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))")
    assert not [h for h in links if h.lower().startswith(("javascript:", "data:"))]
    _clean(page, report)


def test_without_javascript_the_static_order_stands(report: Path) -> None:
    assert BROWSER is not None
    with chromium(BROWSER) as page:
        page.without_javascript()
        page.open((report / "index.html").as_uri())
        assert _visible(page) == STATIC
        assert page.js("document.getElementById('filters').hidden") is True  # no dead controls
        assert page.js("document.getElementById('shown').textContent") == ""
        _clean(page, report)


def test_the_harness_sees_errors_requests_and_dialogs(tmp_path: Path) -> None:
    """The checks above can fail: a page that logs an error, loads a remote image, runs alert() and
    breaks its own CSP is seen doing all of it."""
    probe = tmp_path / "probe.html"
    probe.write_text(
        "<!doctype html><html><head><meta http-equiv='Content-Security-Policy' "
        "content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body>"
        "<img src='http://example.invalid/x.png'>"
        "<script>console.error('boom'); alert(1)</script></body></html>"
    )
    assert BROWSER is not None
    with chromium(BROWSER) as page:
        page.open(probe.as_uri())
        errors = page.log.errors()
        assert any("boom" in e for e in errors) and any("Content Security Policy" in e for e in errors), (
            errors
        )
        assert "http://example.invalid/x.png" in page.log.requests
        assert page.log.dialogs == ["1"]
