"""The report renderers with hostile outside data: summary.csv (formula injection, row breaks) and
index.html (escaping, links). Outside data is everything a task definition, a registry or a scanner
wrote: image names and tags, reasons, family names, finding titles, descriptions and URLs."""

from __future__ import annotations

import csv
import io
import itertools
import json
import unicodedata
from dataclasses import replace
from datetime import UTC, date, datetime
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecs_scan_operator.core.model import (
    Finding,
    ImageRef,
    ImageResult,
    ImageStatus,
    ImageUse,
    RefKind,
    Severity,
)
from ecs_scan_operator.core.policy import PolicyRef, Suppression
from ecs_scan_operator.core.report import (
    UNSAFE_LINE_BREAKS,
    csv_cell,
    image_report_key,
    render_csv,
    render_html,
    render_index_json,
    render_log,
)
from ecs_scan_operator.core.result import RunResult

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
TRIGGERS = ["=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20"]
# Every kind of leading character a spreadsheet may skip before it looks for a formula.
LEADERS = [
    "",
    " ",
    "\t",
    "\r",
    "\n",
    "\r\n",
    "\v",
    "\f",
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",
    "\xa0",  # NBSP
    "\u2000",
    "\u2003",
    "\u200b",  # zero-width space (format)
    "\u2028",
    "\u2029",
    "\u3000",
    "\ufeff",  # BOM / zero-width no-break space
    " \t\r\n",
]
# No double quote in it: a `"` makes the csv module quote the cell anyway and would hide a missing quote.
PAYLOAD = "cmd|' /C calc'!A0"


def _first_meaningful(cell: str) -> str:
    for ch in cell:
        if not (ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp")):
            return ch
    return ""


def _dangerous(cell: str) -> bool:
    """What a spreadsheet would evaluate or mis-split: a trigger after skippable leaders, or TAB/CR first."""
    return cell[:1] in ("\t", "\r") or _first_meaningful(cell) in TRIGGERS


def _hostile_image(text: str, *, where: str) -> ImageResult:
    """An image carrying `text` in one outside-data field."""
    ref = ImageRef(raw=f"{ECR}/app:1", kind=RefKind.ECR, registry=ECR, repository="app", tag="1")
    family, reason, digest = "svc", "ok", "sha256:" + "a" * 64
    if where == "image":
        ref = ImageRef(raw=text, kind=RefKind.MALFORMED, reason="malformed")
    elif where == "tag":
        ref = replace(ref, raw=f"{ECR}/app:{text}", tag=text)
    elif where == "family":
        family = text
    elif where == "reason":
        reason = text
    elif where == "digest":
        digest = text
    finding = Finding(
        "CVE-1",
        Severity.HIGH,
        package=text if where == "package" else "openssl",
        title=text if where == "title" else "t",
        description=text if where == "description" else "d",
        url=text if where == "url" else "https://nvd.nist.gov/vuln/detail/CVE-1",
    )
    return ImageResult(
        ref=ref,
        uses=[ImageUse(family, 1, "c", f"arn:aws:ecs:us-east-1:1:task-definition/{family}:1", "us-east-1")],
        status=ImageStatus.SCANNED,
        reason=reason,
        digest=digest,
        findings=[finding],
    )


FIELDS = ["image", "tag", "family", "reason", "digest", "package", "title", "description", "url"]


def _read_all_ways(text: str) -> dict[str, list[list[str]]]:
    """summary.csv as a csv reader, a universal-newline reader and a splitlines reader see it."""
    return {
        "csv": list(csv.reader(io.StringIO(text, newline=""))),
        "universal": list(csv.reader(io.StringIO(text, newline=None))),
        "splitlines": list(csv.reader(text.splitlines())),
    }


# ------------------------------------------------------------------------------------------- CSV


@pytest.mark.parametrize(("leader", "trigger"), list(itertools.product(LEADERS, TRIGGERS)))
def test_csv_cell_neutralises_a_trigger_after_any_leader(leader: str, trigger: str) -> None:
    text = leader + trigger + PAYLOAD
    kept = text.translate(UNSAFE_LINE_BREAKS)  # odd line breaks become spaces
    assert csv_cell(text) == "'" + kept  # prefixed, the text kept


@pytest.mark.parametrize("text", ["\tplain", "\rplain", "\t", "\r"])
def test_csv_cell_neutralises_a_leading_tab_or_cr(text: str) -> None:
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize(
    "text", ["", "app:1", "svc-a", "a=b", "x-1", "user@host", "  spaced", "'quoted", "1+1", "\u00e9t\u00e9"]
)
def test_csv_cell_keeps_harmless_text(text: str) -> None:
    assert csv_cell(text) == text


@pytest.mark.parametrize("where", FIELDS)
@pytest.mark.parametrize("leader", LEADERS)
def test_summary_csv_every_column_every_leader_every_reader(where: str, leader: str) -> None:
    images = [_hostile_image(leader + trigger + PAYLOAD, where=where) for trigger in TRIGGERS]
    # Line breaks inside a cell, each kind alone (a lone CR is what the csv module leaves unquoted).
    images += [_hostile_image(f"a{brk}={PAYLOAD}", where=where) for brk in ("\r", "\n", "\r\n", "\v", leader)]
    text = render_csv(images)
    for how, rows in _read_all_ways(text).items():
        assert len(rows) == len(images) + 1, how  # a header and one row per image, never more
        assert all(len(row) == len(rows[0]) for row in rows), how
        for row in rows:
            for cell in row:
                assert not _dangerous(cell), (how, cell)
    exact = list(csv.reader(io.StringIO(text, newline="")))
    column = {"image": 0, "tag": 0, "reason": 2, "digest": 3}.get(where, exact[0].index("families"))
    if where in ("image", "tag", "reason", "digest", "family"):
        # The text is kept: the cell is the input, prefixed by one quote when it was dangerous.
        for img, row in zip(images, exact[1:], strict=True):
            original = {
                "image": img.ref.raw,
                "tag": img.ref.raw,
                "reason": img.reason,
                "digest": img.digest,
                "family": img.families[0],
            }[where]
            assert original is not None, where
            original = original.translate(UNSAFE_LINE_BREAKS)  # odd line breaks become spaces
            assert row[column] in (original, "'" + original)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=4), st.sampled_from(FIELDS))
def test_summary_csv_property_any_text_one_row_no_trigger(texts: list[str], where: str) -> None:
    images = [_hostile_image(t, where=where) for t in texts]
    text = render_csv(images)
    for how, rows in _read_all_ways(text).items():
        assert len(rows) == len(images) + 1, how
        assert not any(_dangerous(cell) for row in rows for cell in row), how
    exact = list(csv.reader(io.StringIO(text, newline="")))
    if where == "reason":  # kept: the input itself (odd line breaks as spaces), after the one quote
        wanted = [t.translate(UNSAFE_LINE_BREAKS) for t in texts]
        kept = [row[2][1:] if _dangerous(t) else row[2] for row, t in zip(exact[1:], wanted, strict=True)]
        assert kept == wanted


@pytest.mark.parametrize("brk", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
@pytest.mark.parametrize("after", ["\t", "=cmd|' /C calc'!A0", "\r=1"])
def test_a_line_break_other_than_cr_lf_cannot_start_a_dangerous_line(brk: str, after: str) -> None:
    # str.splitlines (and line-based importers) cut a cell at these: what follows must not become
    # the start of a line that a spreadsheet evaluates or splits.
    text = render_csv([_hostile_image("x" + brk + after, where="reason")])
    assert brk not in text
    for how, rows in _read_all_ways(text).items():
        assert len(rows) == 2 and not any(_dangerous(cell) for cell in rows[1]), how


def test_summary_csv_has_no_url_column() -> None:
    # Finding URLs go to the per-image JSON (data) and to tickets (links through safe_url), never into
    # the spreadsheet; so no `file:` or `javascript:` URL can reach a cell there.
    img = _hostile_image("file:///etc/passwd", where="url")
    text = render_csv([img])
    assert "file:" not in text and "nvd.nist.gov" not in render_csv([_hostile_image("x", where="title")])


# ------------------------------------------------------------------------------------------ HTML

ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "p", "div", "span", "b", "ul", "li",
    "table", "thead", "tr", "th", "tbody", "td", "a", "br", "small", "script",
}  # fmt: skip
ALLOWED_ATTRS = {"lang", "charset", "name", "content", "class", "href", "title"}


class _Page(HTMLParser):
    """Every element, attribute and text run of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.scripts if self._in_script else self.text).append(data)


HOSTILE = [
    "<script>alert(1)</script>",
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    '" onmouseover="alert(1)',
    "' onfocus='alert(1)' autofocus='",
    "javascript:alert(1)",
    "{{ 7*7 }}{% for x in range(3) %}X{% endfor %}{# c #}",
    "</td></tr></table><a href=javascript:alert(1)>x</a>",
    "</title><script>alert(1)</script>",
    "<!-- --><![CDATA[x]]>",
    "&lt;script&gt;&amp;",
    "a\x00b\x01c\x1b[31m\x7f\u2028\u202e",
    "x" * 100_000,
]
HOSTILE_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "vbscript:msgbox(1)",
    "//evil.example.com/x",
    "/etc/passwd",
    "images/../../x",
    "images/%2e%2e/%2e%2e/x.json",
    "images/..\\..\\x.json",
    "images/.hidden.json",
    "images/app/1.json?x=javascript:1",
    "images/app/1.json#frag",
    "images",
    "Images/app/1.json",
    '"><script>alert(1)</script>',
]


def _result(policy: str = "team-a/nightly", run_id: str = "r1") -> RunResult:
    return RunResult(run_id=run_id, policy=policy, started=datetime(2026, 11, 28, tzinfo=UTC))


def _assert_inert(page_html: str, *, hostile: str | None = None) -> _Page:
    page = _Page()
    page.feed(page_html)
    page.close()
    assert set(page.tags) <= ALLOWED_TAGS, set(page.tags) - ALLOWED_TAGS
    assert page.tags.count("script") == 1  # ours, the sorting script, and nothing else
    assert "alert" not in "".join(page.scripts)
    for tag, name, value in page.attrs:
        assert name in ALLOWED_ATTRS, (tag, name)  # no attribute breakout (onerror=, onmouseover=...)
        if name == "href":
            assert value is not None
            assert value.startswith(("http://", "https://", "images/")), value
    if hostile is not None:
        # Shown as text, not evaluated: `{{ 7*7 }}` stays itself, markup stays characters.
        assert hostile in "".join(page.text)
    return page


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("where", ["image", "tag", "family", "reason"])
def test_index_html_escapes_outside_data(text: str, where: str) -> None:
    img = _hostile_image(text, where=where)
    page_html = render_html([img], _result(), {img.ref.raw: "images/app/1.json"}, [])
    # A NUL becomes U+FFFD in browsers; html.parser passes it through, so the text compares as is.
    _assert_inert(page_html, hostile=text)
    assert "49" not in page_html.split("<script>")[0].replace(text, "")


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_index_html_escapes_policy_run_and_suppressions(text: str) -> None:
    sup = Suppression(vulnerability_id="CVE-2024-0001", reason=text[:1000], expires=date(2026, 1, 1))
    page_html = render_html([], _result(policy=text, run_id=text), {}, [sup])
    _assert_inert(page_html, hostile=text)


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_index_html_links_only_http_or_own_reports(url: str) -> None:
    img = _hostile_image("x", where="reason")
    page = _assert_inert(render_html([img], _result(), {img.ref.raw: url}, []))
    assert [v for _, k, v in page.attrs if k == "href"] == []
    assert page.tags.count("a") == 0 and page.tags.count("span") >= 1  # the name is shown as text


@pytest.mark.parametrize(
    "url",
    [
        "https://nvd.nist.gov/vuln/detail/CVE-1",
        "images/app/1.json",
        "images/team/app/v1.2.3-rc_1+build=7.json",
        "images/app/sha256_abc~0123456789ab.json",
    ],
)
def test_index_html_keeps_good_links(url: str) -> None:
    img = _hostile_image("x", where="reason")
    page = _assert_inert(render_html([img], _result(), {img.ref.raw: url}, []))
    assert [v for _, k, v in page.attrs if k == "href"] == [url]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.sampled_from(["image", "tag", "family", "reason"]))
def test_index_html_property_any_text_is_inert(text: str, where: str) -> None:
    img = _hostile_image(text, where=where)
    _assert_inert(render_html([img], _result(policy=text), {img.ref.raw: text}, []))


def test_index_html_is_self_contained_and_sortable() -> None:
    img = _hostile_image("x", where="reason")
    page_html = render_html([img], _result(), {img.ref.raw: "images/app/1.json"}, [])
    head = page_html.split("<body>")[0]
    assert "http" not in head and "<link" not in head  # no external stylesheet, font or script
    page = _assert_inert(page_html)
    assert "addEventListener" in "".join(page.scripts)
    assert page.tags.count("th") == 11 and page.tags.count("tr") == 2


def test_every_run_file_is_inert_with_hostile_data() -> None:
    images = [_hostile_image(t, where=w) for t in HOSTILE[:4] for w in FIELDS]
    written = {image_report_key("f", img) for img in images}
    index = json.loads(
        render_index_json(
            "f", PolicyRef(), images, _result(), {}, [], written=written, objects=["summary.csv"]
        )
    )
    assert len(index["images"]) == len(images)
    _assert_inert(render_html(images, _result(), {}, []))
    rows = list(csv.reader(io.StringIO(render_csv(images), newline=None)))
    assert len(rows) == len(images) + 1
    log_lines = render_log([{"event": "<script>", "detail": "a\nb"}]).decode().splitlines()
    assert [json.loads(line)["event"] for line in log_lines] == ["<script>"]  # one line per entry


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=150), st.text(min_size=1, max_size=150))
def test_every_affected_image_links_to_its_own_report(repository: str, tag: str) -> None:
    # Whatever the names, the key `image_key` builds is one the page accepts as a link (no report
    # silently loses its link) and it points inside the run's images/ folder.
    img = _hostile_image("x", where="reason")
    img.ref = replace(img.ref, repository=repository, tag=tag, raw=f"{ECR}/{repository}:{tag}")
    key = image_report_key("runs/r1", img)
    page = _assert_inert(render_html([img], _result(), {img.ref.raw: key.removeprefix("runs/r1/")}, []))
    hrefs = [v for _, k, v in page.attrs if k == "href"]
    assert len(hrefs) == 1 and hrefs[0] is not None
    assert hrefs[0] == image_report_key("runs/r1", img).removeprefix("runs/r1/")
