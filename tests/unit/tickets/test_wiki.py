"""The ticket text in Jira wiki markup: escaping, links, description, summary (core/tickets/wiki.py)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecs_scan_operator.core.model import Finding, ImageResult
from ecs_scan_operator.core.policy import PolicySpec
from ecs_scan_operator.core.tickets import (
    esc,
    evaluate_group,
    group_images,
    link,
)
from ecs_scan_operator.core.tickets.wiki import (
    TEXT_BUDGET,
    advisory_url,
    render_change_comment,
    render_description,
    render_summary,
)
from tests.jira_server import fleet
from tests.unit.tickets.support import CRIT, HIGH, NOW, spec_with


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain", "plain"),
        ("a|b", r"a\|b"),
        ("[x]{y}", r"\[x\]\{y\}"),
        ("*bold* _it_", r"\*bold\* \_it\_"),
        ("two\nlines", "two lines"),
    ],
)
def test_wiki_escape(text: str, escaped: str) -> None:
    assert esc(text) == escaped


def test_links() -> None:
    assert link("x", "https://a.example/p?q=1|2") == "[x|https://a.example/p?q=1%7C2]"
    assert link("x", "javascript:alert(1)") == "x"
    assert link("x", "") == "x"


def _group(images: list[ImageResult], spec: PolicySpec) -> Any:
    assert spec.jira is not None
    (group,) = group_images(images, spec.jira)
    return group


def test_description_has_what_a_team_needs() -> None:
    spec = spec_with()
    img = fleet.image("app/api", "1.0", [CRIT], families=[("web", "app"), ("worker", "jobs")])
    group = _group([img], spec)
    req = fleet.request(spec, [img], NOW, "run-42")
    text = render_description(req, group, evaluate_group(group, None))
    for needle in (
        "app/api",
        "1.0",
        img.digest or "",
        "|web|app|",
        "|worker|jobs|",
        "CVE-2024-2",
        "https://nvd.nist.gov/vuln/detail/CVE-2024-2",
        "3.0.1 → 3.0.15",
        "run-42",
        "run.log.jsonl",
        "h3. What to do",
        "at or above MEDIUM",
    ):
        assert needle in text, needle
    assert len(text) < TEXT_BUDGET


def test_description_is_summarized_past_the_limit() -> None:
    spec = spec_with()
    findings = [(f"CVE-2024-{i:05d}", f"pkg-{i}-" + "x" * 60, "HIGH") for i in range(2000)]
    img = fleet.image("app/api", "1.0", findings, families=[(f"family-{i}", "c") for i in range(300)])
    group = _group([img], spec)
    text = render_description(fleet.request(spec, [img], NOW), group, evaluate_group(group, None))
    assert len(text) <= TEXT_BUDGET
    assert re.search(r"Showing the \d+ most severe of 2000 findings", text)
    assert "index.html" in text


def test_summary_is_bounded() -> None:
    spec = spec_with(groupBy="image")
    img = fleet.image("a" * 200 + "/b" * 20, "t" * 100, [HIGH, CRIT])
    group = _group([img], spec)
    summary = render_summary(group, evaluate_group(group, None))
    assert len(summary) <= 255
    assert summary.endswith(": 1 CRITICAL, 1 HIGH")


# Every way a URL from scanner data or a report location can be something other than a web link.
HOSTILE_URLS = [
    "file:///etc/passwd",
    "FILE:///C:/Windows/win.ini",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.cookie)",
    " javascript:alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "s3://ecs-scan-reports/ecs-scan/index.html",
    "ftp://mirror.example/pkg.tar.gz",
    "mailto:security@example.com",
    "//evil.example/x",  # scheme-relative
    "nvd.nist.gov/vuln/detail/CVE-2024-1",  # no scheme
    "https://",  # no host
    "http:///etc/passwd",
    "https://a.example/\x00x",
    "https://a.example/x\ny",
    "https://a.example/\rx",
    "https://a.example/\x7fx",
    "https://a.example/x y",
    "https://a.example/\u2028x",
    "https://[::1/x",  # unbalanced IPv6 bracket
    "https://a.example:99999/",  # port out of range
    "https://a.example/" + "x" * 3000,  # data, not a link
    "",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_only_web_urls_become_links(url: str) -> None:
    assert link("open [it]", url) == r"open \[it\]"  # the text alone; the URL is dropped


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("https://a.example/p?q=1|2", "https://a.example/p?q=1%7C2"),
        # Wiki markup inside a web URL cannot end the link or start another one.
        (
            "https://a.example/x]|[evil|javascript:alert(1)]",
            "https://a.example/x%5D%7C%5Bevil%7Cjavascript:alert(1)%5D",
        ),
        ("https://a.example/{code}*b*", "https://a.example/%7Bcode%7D*b*"),
        ("HTTP://A.EXAMPLE/CVE", "HTTP://A.EXAMPLE/CVE"),
        ("https://a.example/caf\u00e9", "https://a.example/caf%C3%A9"),
    ],
)
def test_web_urls_are_links_with_markup_encoded(url: str, target: str) -> None:
    assert link("x|y", url) == f"[x\\|y|{target}]"


@given(st.text(max_size=60), st.text(max_size=60))
def test_a_link_is_the_escaped_text_or_one_clean_web_link(text: str, url: str) -> None:
    got = link(text, url)
    if got == esc(text):
        return
    m = re.fullmatch(r"\[(.*)\|(https?://[^\s|\[\]{}<>\"]+)\]", got, re.DOTALL | re.IGNORECASE)
    assert m is not None, got
    assert m.group(1) == esc(text)


@pytest.mark.parametrize("url", [u for u in HOSTILE_URLS if u])
def test_a_hostile_finding_url_falls_back_to_the_advisory_database(url: str) -> None:
    f = replace(fleet.finding("CVE-2024-9"), url=url)
    assert advisory_url(f) == "https://nvd.nist.gov/vuln/detail/CVE-2024-9"
    ghsa = replace(fleet.finding("GHSA-aaaa-bbbb-cccc"), url=url)
    assert advisory_url(ghsa) == "https://github.com/advisories/GHSA-aaaa-bbbb-cccc"
    assert advisory_url(replace(fleet.finding("ALAS-2024-1"), url=url)) == ""


def _link_targets(text: str) -> list[str]:
    return re.findall(r"(?<!\\)\[(?:[^\]]|\\\])*?(?<!\\)\|([^\]]*)\]", text)


def _with_urls(img: ImageResult, url: str) -> ImageResult:
    return replace(img, findings=[replace(f, url=url) for f in img.findings])


@pytest.mark.parametrize("url", [u for u in HOSTILE_URLS if u and len(u) < 200])
def test_no_hostile_url_reaches_a_ticket(url: str) -> None:
    spec = spec_with()
    img = _with_urls(fleet.image("app/api", "1.0", [CRIT, ("ALAS-2024-1", "zlib", "HIGH")]), url)
    group = _group([img], spec)
    req = replace(
        fleet.request(spec, [img], NOW),
        report_links={img.ref.display: url},
        index_link=url,
        run_log_link=url,
    )
    gf = evaluate_group(group, None)
    description = render_description(req, group, gf)
    # The CVE still links to NVD; no other link is left.
    assert _link_targets(description) == ["https://nvd.nist.gov/vuln/detail/CVE-2024-2"]
    for text in (description, render_change_comment(req, gf, None)):
        assert _link_targets(text) in ([], ["https://nvd.nist.gov/vuln/detail/CVE-2024-2"])
        for scheme in ("file:", "javascript:", "vbscript:", "data:", "s3:", "ftp:", "mailto:"):
            assert scheme not in text.lower()
        assert "\x00" not in text and "\r" not in text and "\x7f" not in text


def test_report_links_on_the_web_stay_links() -> None:
    spec = spec_with()
    img = fleet.image("app/api", "1.0", [CRIT])
    index = "https://eu-west-1.console.aws.amazon.com/s3/object/b?region=eu-west-1&prefix=r/index.html"
    req = replace(fleet.request(spec, [img], NOW), index_link=index)
    text = render_description(req, _group([img], spec), evaluate_group(_group([img], spec), None))
    assert f"* Run index: [index.html|{index}]" in text


def test_a_finding_with_its_own_web_link_keeps_it() -> None:
    f: Finding = replace(fleet.finding("CVE-2024-9"), url="https://vendor.example/advisory/9")
    assert advisory_url(f) == "https://vendor.example/advisory/9"
