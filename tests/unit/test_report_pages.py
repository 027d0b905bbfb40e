"""The pages a person reads: index.html (order, filters, signal columns) and each image's page.

Escaping is tested as a class: every field of an image or a finding that comes from outside
(registry, task definition, scanner, CISA, the running view) carries every hostile text in turn,
and every URL field every hostile URL, on both pages.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from ecs_scan_operator.core.model import (
    Assessment,
    Finding,
    FixAvailable,
    ImageRef,
    ImageResult,
    ImageStatus,
    ImageUse,
    RefKind,
    RuntimeContext,
    ScanType,
    Severity,
    Signals,
)
from ecs_scan_operator.core.policy import PolicyRef
from ecs_scan_operator.core.report import (
    encode_stream,
    render_csv,
    render_csv_bytes,
    render_html,
    render_html_bytes,
    render_image_page,
    render_images,
    render_index_json,
)
from tests.unit.test_report import ECR, HOSTILE, HOSTILE_URLS, _Page, _result

POLICY = PolicyRef(namespace="team-a", name="nightly")
PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "b", "ol", "li", "table", "thead",
    "tr", "th", "tbody", "td", "a", "br", "small", "dl", "dt", "dd", "span",
}  # fmt: skip
PAGE_ATTRS = {"lang", "charset", "name", "content", "class", "href", "http-equiv"}


def finding(vid: str = "CVE-2024-1", **kw: Any) -> Finding:
    base: dict[str, Any] = {
        "package": "openssl",
        "installed_version": "3.0.11",
        "fixed_version": "3.0.13",
        "title": "t",
        "description": "d",
        "url": f"https://nvd.nist.gov/vuln/detail/{vid}",
    }
    return Finding(vid, kw.pop("severity", Severity.HIGH), **(base | kw))


def image(
    repo: str = "team/app", tag: str = "1", findings: list[Finding] | None = None, **kw: Any
) -> ImageResult:
    ref = ImageRef(raw=f"{ECR}/{repo}:{tag}", kind=RefKind.ECR, registry=ECR, repository=repo, tag=tag)
    return ImageResult(
        ref=ref,
        uses=kw.pop("uses", [ImageUse("svc", 1, "app", "arn:aws:ecs:us-east-1:1:task-definition/svc:1")]),
        status=ImageStatus.SCANNED,
        digest="sha256:" + "a" * 64,
        scan_type=ScanType.ENHANCED,
        findings=[finding()] if findings is None else findings,
        **kw,
    )


# Where outside text can sit: (name, how to put `text` there).
def _in_finding(**field: Any) -> Any:
    return lambda text: image(
        findings=[finding(**{k: (text if v is None else v(text)) for k, v in field.items()})]
    )


def _hostile_vid(text: str) -> ImageResult:
    return image(findings=[finding(vid=text)])


def _runtime(field: str) -> Any:
    def make(text: str) -> ImageResult:
        rt = RuntimeContext(
            clusters=("c1",), services=("s1",), running_tasks=2, running_digests=("sha256:1",)
        )
        change: dict[str, Any] = {field: (text,) if field != "tag_digest" else text}
        return image(runtime=replace(rt, **change))

    return make


OUTSIDE: dict[str, Any] = {
    "repository": lambda text: image(repo=text),
    "tag": lambda text: image(tag=text),
    "reason": lambda text: image(reason=text),
    "family": lambda text: image(uses=[ImageUse(text, 1, "app", "arn")]),
    "container": lambda text: image(uses=[ImageUse("svc", 1, text, "arn")]),
    "service": lambda text: image(uses=[ImageUse("svc", 1, "app", "arn", service=text, tasks=1)]),
    "account": lambda text: image(uses=[ImageUse("svc", 1, "app", "arn", account=text)]),
    "vulnerability_id": _hostile_vid,
    "title": _in_finding(title=None),
    "description": _in_finding(description=None),
    "package": _in_finding(package=None),
    "installed_version": _in_finding(installed_version=None),
    "fixed_version": _in_finding(fixed_version=None),
    "remediation": _in_finding(signals=lambda t: Signals(remediation=t)),
    "kev_action": _in_finding(signals=lambda t: Signals(kev=True, kev_action=t)),
    "clusters": _runtime("clusters"),
    "services": _runtime("services"),
    "running_digests": _runtime("running_digests"),
    "tag_digest": _runtime("tag_digest"),
    "suppressed": lambda text: image(suppressed=[(finding(package=text), text)]),
}


def _parse(html: str, tags: set[str], attrs: set[str]) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    assert set(page.tags) <= tags, set(page.tags) - tags
    for tag, name, value in page.attrs:
        assert name in attrs, (tag, name)  # no attribute breakout (onerror=, onmouseover=...)
        if name == "href":
            assert value is not None
            assert value.startswith(("https://", "http://", "images/", "../", "1.json", "index.html")) or (
                "/" not in value and value.endswith(".json")
            ), value
    return page


def _index_attrs() -> set[str]:
    from tests.unit.test_report import ALLOWED_ATTRS

    return ALLOWED_ATTRS


def _index_tags() -> set[str]:
    from tests.unit.test_report import ALLOWED_TAGS

    return ALLOWED_TAGS


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("where", sorted(OUTSIDE))
def test_every_outside_field_is_inert_on_both_pages(where: str, text: str) -> None:
    img = OUTSIDE[where](text)
    page = _parse(render_image_page(img, "r1", POLICY, depth=2), PAGE_TAGS, PAGE_ATTRS)
    assert page.scripts == []  # an image page runs no script at all
    index = _parse(
        render_html(
            [img], _result(), {img.ref.raw: "images/x/1.json"}, [], pages={img.ref.raw: "images/x/1.html"}
        ),
        _index_tags(),
        _index_attrs(),
    )
    assert index.tags.count("script") == 1 and "alert" not in "".join(index.scripts)
    # Shown as text where it is shown at all (descriptions are in the JSON only), never evaluated.
    shown = "".join(page.text) + "".join(index.text)
    if where not in ("description",):
        assert text.strip() in shown or text[:40] in shown, where
    assert "49" not in shown.replace(text, "")  # `{{ 7*7 }}` stays itself


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_a_finding_url_is_a_link_only_when_it_is_http(url: str) -> None:
    img = image(findings=[finding(vid="CVE-2024-7", url=url), finding(vid="GHSA-xxxx-yyyy-zzzz", url=url)])
    img.suppressed = [(finding(vid="XSA-1", url=url), "why")]
    page = _parse(render_image_page(img, "r1", POLICY, depth=2), PAGE_TAGS, PAGE_ATTRS)
    hrefs = [v for _, k, v in page.attrs if k == "href"]
    # The hostile URL is never a link: the advisory database's page is, for known id schemes.
    assert sorted(h for h in hrefs if h and h.startswith("http")) == [
        "https://github.com/advisories/GHSA-xxxx-yyyy-zzzz",
        "https://nvd.nist.gov/vuln/detail/CVE-2024-7",
    ]
    assert "XSA-1" in "".join(page.text)


@pytest.mark.parametrize("vid", ["CVE-2024-1<script>", "CVE-x/../../y", "GHSA-a/b", "javascript:alert(1)"])
def test_an_id_that_is_not_an_id_builds_no_advisory_link(vid: str) -> None:
    page = _parse(
        render_image_page(image(findings=[finding(vid=vid, url="")]), "r1", POLICY, depth=1),
        PAGE_TAGS,
        PAGE_ATTRS,
    )
    assert not [v for _, k, v in page.attrs if k == "href" and v and v.startswith("http")]


# ---- unknown is never "no" --------------------------------------------------------------------


def _cells(html: str) -> list[str]:
    page = _Page()
    page.feed(html)
    return [t.strip() for t in page.text if t.strip()]


def test_basic_scan_shows_unknown_signals_never_no() -> None:
    basic = finding(fixed_version="", url="")  # BASIC: no fix version, no signals
    img = replace(image(findings=[basic]), scan_type=ScanType.BASIC)
    html = render_image_page(img, "r1", POLICY, depth=1)
    row = html.split("<tbody>")[1].split("</tr>")[0]
    cells = _cells(row)
    assert "no" not in cells and "none" not in cells
    assert cells.count("unknown") >= 5  # priority, fixed, EPSS, exploit, KEV (first seen too)
    index = render_html([img], _result(), {}, [])
    row = index.split("<tbody>")[1].split("</tr>")[0]
    assert _cells(row).count("unknown") >= 5  # priority, kev, exploit, fix, overdue, redeploy


def test_known_signals_are_shown() -> None:
    exploited = datetime(2026, 3, 1, tzinfo=UTC)
    f = finding(
        signals=Signals(epss=0.97312, exploit_available=True, last_known_exploit_at=exploited,
                        fix_available=FixAvailable.YES, kev=True, kev_date_due=date(2026, 4, 1)),
        assessment=Assessment(priority="P1", first_seen=datetime(2026, 1, 2, tzinfo=UTC),
                              due=date(2026, 2, 1), overdue=True),
    )  # fmt: skip
    no = finding("CVE-2024-2", fixed_version="", signals=Signals(exploit_available=False, kev=False,
                                                                  fix_available=FixAvailable.NO))  # fmt: skip
    html = render_image_page(image(findings=[f, no]), "r1", POLICY, depth=1)
    rows = html.split("<tbody>")[1].split("</tr>")
    first, second = _cells(rows[0]), _cells(rows[1])
    for expected in ("P1", "3.0.11 → 3.0.13", "0.9731", "yes (last 2026-03-01)", "yes (CISA due 2026-04-01)",
                     "2026-01-02", "2026-02-01 (overdue)"):  # fmt: skip
        assert expected in " ".join(first) or expected in first, expected
    assert "no" in second and "3.0.11 → none" in " ".join(second)


def test_runtime_unknown_without_a_running_view() -> None:
    html = render_image_page(image(), "r1", POLICY, depth=1)
    assert "unknown: this run did not look up what runs" in html
    rt = RuntimeContext(clusters=("prod",), services=("api",), running_tasks=3,
                        running_digests=("sha256:old",), tag_digest="sha256:new")  # fmt: skip
    html = render_image_page(image(runtime=rt, redeploy_needed=True), "r1", POLICY, depth=1)
    text = " ".join(_cells(html))
    assert "Redeploy needed: the tag already points at an image without these findings" in text
    assert "prod" in text and "sha256:new" in text and "Drift" in text


# ---- index.html: static order and filter attributes --------------------------------------------------


def _rows(html: str) -> list[str]:
    return html.split("<tbody>")[1].split("</tbody>", maxsplit=1)[0].split("<tr")[1:]


def test_index_static_order_is_most_urgent_first() -> None:
    def prio(p: str, sev: Severity = Severity.HIGH, **sig: Any) -> Finding:
        return finding(severity=sev, assessment=Assessment(priority=p), signals=Signals(**sig))

    images = [
        image("a/none", findings=[]),
        image("b/p3", findings=[prio("P3", Severity.CRITICAL)]),
        image("c/p1", findings=[prio("P1", kev=True)]),
        image("d/unprioritised", findings=[finding(severity=Severity.CRITICAL)]),
        image("e/p2-high", findings=[prio("P2")]),
        image("f/p2-crit", findings=[prio("P2", Severity.CRITICAL)]),
    ]
    html = render_html(images, _result(), {}, [])
    order = [next(i.ref.repository for i in images if f">{i.ref.repository}:1<" in r) for r in _rows(html)]
    assert order == ["c/p1", "f/p2-crit", "e/p2-high", "b/p3", "d/unprioritised", "a/none"]


def test_index_rows_carry_the_filter_flags() -> None:
    kev = finding(
        signals=Signals(kev=True), assessment=Assessment(priority="P1", due=date(2026, 1, 1), overdue=True)
    )
    use = ImageUse("svc", 1, "app", "arn", account="111122223333")
    img = image(findings=[kev], uses=[use], redeploy_needed=True, runtime=RuntimeContext())
    plain = image("x/plain", findings=[finding(fixed_version="")])
    html = render_html([img, plain], _result(), {}, [])
    first, second = _rows(html)
    for flag in (
        'data-kev="1"',
        'data-fix="1"',
        'data-overdue="1"',
        'data-redeploy="1"',
        'data-account="111122223333"',
    ):
        assert flag in first, flag
    for flag in ('data-kev="0"', 'data-fix="0"', 'data-overdue="0"', 'data-redeploy="0"', 'data-account=""'):
        assert flag in second, flag
    assert '<option value="111122223333">' in html


def test_index_filters_are_hidden_without_script() -> None:
    html = render_html([image()], _result(), {}, [])
    assert '<div class="filters" id="filters" hidden>' in html  # the script shows them


def test_render_images_writes_a_page_next_to_each_json() -> None:
    objs = list(render_images("f", POLICY, [image(), image("b/c", findings=[])], "r1", {}))
    assert [(o.key, o.content_type) for o in objs] == [
        ("f/images/team/app/1.json", "application/json"),
        ("f/images/team/app/1.html", "text/html; charset=utf-8"),
    ]
    page = objs[1].body.decode()
    assert 'href="../../../index.html"' in page  # images/team/app/ and 'href="1.json"' in page


def test_index_json_names_each_image_page_and_priority_only_when_stored() -> None:
    urgent = image(findings=[finding(assessment=Assessment(priority="P2"))])
    other = image("b/c")
    keys = [o.key for o in render_images("f", POLICY, [urgent, other], "r1", {})]
    written = {k for k in keys if not (k.startswith("f/images/b/") and k.endswith(".html"))}
    doc = json.loads(
        render_index_json("f", POLICY, [urgent, other], _result(), {}, [], written=written, objects=[])
    )
    first, second = doc["images"]
    assert (first["report"], first["page"], first["priority"]) == (
        "images/team/app/1.json",
        "images/team/app/1.html",
        "P2",
    )
    assert (second["report"], second["page"], second["priority"]) == ("images/b/c/1.json", None, None)


def _varied_fleet() -> list[ImageResult]:
    """Images covering every row shape: hostile and non-ASCII text, no findings, runtime, accounts."""
    use = ImageUse("svc", 1, "app", "arn", account="111122223333", service="web", tasks=3)
    out = [
        image("a/none", findings=[]),
        image("b/kev", findings=[finding(signals=Signals(kev=True), assessment=Assessment(priority="P1"))]),
        image("c/run", uses=[use], redeploy_needed=True, runtime=RuntimeContext(clusters=("c1",))),
        image("d/unicode", findings=[finding(title="é \u2013 ü 漢字 \U0001f600", package="пакет")]),
    ]
    out += [image(f"h/{i}", findings=[finding(title=t, package=t)]) for i, t in enumerate(HOSTILE)]
    return out


@pytest.mark.parametrize("images", [[], [image()], _varied_fleet()], ids=["empty", "one", "varied"])
def test_index_html_as_bytes_is_the_page_encoded(images: list[ImageResult]) -> None:
    links = {img.ref.raw: f"images/{img.ref.repository}/1.json" for img in images[::2]}
    pages = {img.ref.raw: f"images/{img.ref.repository}/1.html" for img in images[::3]}
    names = {"111122223333": "payments <prod>"}
    text = render_html(images, _result(), links, [], names, pages=pages)
    assert render_html_bytes(images, _result(), links, [], names, pages=pages) == text.encode()


@pytest.mark.parametrize("batch", [1, 2, 3, 4096])
def test_encode_stream_is_the_joined_text_encoded(batch: int) -> None:
    pieces = ["", "a", "é", "\U0001f600", "x" * 5000, "漢", ""] * 3
    assert encode_stream(iter(pieces), batch) == "".join(pieces).encode()
    assert encode_stream([], batch) == b""


def test_index_json_is_one_json_dumps_of_the_whole() -> None:
    images = _varied_fleet()
    written = {o.key for o in render_images("f", POLICY, images, "r1", {})}
    for subset in ([], images[:1], images):
        body = render_index_json("f", POLICY, subset, _result(), {}, [], written=written, objects=["a.csv"])
        assert body == json.dumps(json.loads(body), separators=(",", ":")).encode()
        assert len(json.loads(body)["images"]) == len(subset)


@pytest.mark.parametrize("images", [[], [image()], _varied_fleet()], ids=["empty", "one", "varied"])
def test_summary_csv_as_bytes_is_the_text_encoded(images: list[ImageResult]) -> None:
    uses = [ImageUse(f, 1, "app", "arn") for f in ("a\r\nb", "c\rd", "é\u2028f", "=1+1")]
    crlf = image("e/crlf", findings=[finding(title="x\r\ny")], uses=uses)
    names = {"111122223333": "payments, prod"}
    for fleet in (images, [*images, crlf]):
        assert render_csv_bytes(fleet, names) == render_csv(fleet, names).encode()
