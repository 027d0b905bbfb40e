"""Fleet XL's machinery on a tiny organization (3 accounts x 2 regions x 20 families): the emulation
accepts every request, Inspector is read only through the delegated administrator, every family is
described once, and the denying account fails only its own pairs. Figures are not asserted: the
targets are measured at full size by `make bench-org`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import org

pytestmark = pytest.mark.bench


def test_bench_org_tiny(tmp_path: Path) -> None:
    results, md = tmp_path / "org.json", tmp_path / "RESULTS.md"
    md.write_text("# results\n\n## Operator at scale\n\nkept\n", encoding="utf-8")
    argv = ["--accounts", "3", "--families", "20", "--results-json", str(results), "--results-md", str(md)]
    assert org.main(argv) == 0
    data = json.loads(results.read_text(encoding="utf-8"))
    full, deny = data["runs"]["all"], data["runs"]["deny"]
    for run in (full, deny):
        assert run["rejected"] == [] and run["faults"] == {}
        # The model and the operator's own counter agree (AssumeRole goes through botocore's fetcher,
        # whose STS client the operator does not count).
        assert {k: v for k, v in run["calls"].items() if k != "sts:AssumeRole"} == run["callsCounted"]
    assert full["result"]["result"] == "Succeeded"
    assert full["calls"]["ecs:DescribeTaskDefinition"] == 3 * 2 * 20
    assert full["result"]["taskDefinitions"] == 3 * 2 * 20
    assert full["calls"]["organizations:ListAccounts"] == 1
    # 20 images in each region, and the public sidecar
    assert full["result"]["imagesByAccount"] == {org.account_id(i): 2 * 20 + 1 for i in range(3)}
    denied = deny["deny"]
    assert deny["result"]["result"] == "PartialFailure"
    assert sorted(deny["result"]["stageFailures"]) == [
        f"taskDefinitions[{denied}/{r}]" for r in sorted(org.REGIONS)
    ]
    assert deny["result"]["taskDefinitions"] == 2 * 2 * 20
    text = md.read_text(encoding="utf-8")
    assert org.SECTION in text and "kept" in text  # the other sections stay
    assert text.index("## Operator at scale") < text.index(org.SECTION)
    # Rendering again replaces the section, not appends it.
    org.write_section(org.render_section(data), md)
    assert md.read_text(encoding="utf-8").count(org.SECTION) == 1
