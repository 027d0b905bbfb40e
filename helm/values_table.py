"""The values table of the chart README, written from values.yaml (its comments and defaults).

Every key in values.yaml carries a comment that starts with the key's name; this script reads
those comments and the defaults and writes the table between the markers
`<!-- values-table:start -->` and `<!-- values-table:end -->` of README.md.

    python helm/values_table.py            # rewrite the table in the README
    python helm/values_table.py --check    # exit 1 when the README table is stale or a key is undocumented
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "ecs-scan-operator"
START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.\-/\"]+):(?:\s+(?P<rest>.*))?$")


@dataclass(frozen=True)
class Value:
    """One key of values.yaml: its dotted path, its comment and whether it is a leaf."""

    path: tuple[str, ...]
    doc: str


def documented_keys(text: str) -> list[Value]:
    """Every mapping key outside list items, with the comment block right above it."""
    out: list[Value] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    list_parent: int | None = None  # indent of the key whose list we are inside
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not stripped:
            pending = []  # a comment separated by a blank line belongs to no key
            continue
        if list_parent is not None:
            if indent > list_parent or (indent == list_parent and stripped.startswith("- ")):
                continue
            list_parent = None
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        if stripped.startswith("- "):
            list_parent = stack[-1][0] if stack else 0
            pending = []
            continue
        match = _KEY.match(line)
        if not match:
            raise ValueError(f"cannot parse values.yaml line: {line!r}")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = match["key"].strip('"')
        stack.append((indent, key))
        out.append(Value(tuple(k for _, k in stack), " ".join(pending)))
        pending = []
    return out


def undocumented(values: list[Value]) -> list[str]:
    """Keys whose comment is missing or does not start with the key's name."""
    bad = []
    for v in values:
        first = v.doc.split(" ", 1)[0] if v.doc else ""
        if first != v.path[-1]:
            bad.append(".".join(v.path))
    return bad


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(values_file: Path = CHART / "values.yaml") -> str:
    """The Markdown table: every leaf value (or empty map/list), its default and its comment."""
    text = values_file.read_text()
    data = yaml.safe_load(text)
    rows = ["| Value | Default | Description |", "| --- | --- | --- |"]
    for v in documented_keys(text):
        default = _lookup(data, v.path)
        if isinstance(default, dict) and default:
            continue  # a section: its keys have their own rows
        shown = json.dumps(default, separators=(", ", ": "))
        rows.append(f"| `{'.'.join(v.path)}` | `{_cell(shown)}` | {_cell(v.doc)} |")
    return "\n".join(rows) + "\n"


def render_readme(readme: str, values_file: Path = CHART / "values.yaml") -> str:
    """README text with the table between the markers replaced."""
    if START not in readme or END not in readme:
        raise ValueError(f"README.md lacks the markers {START} / {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(values_file)}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or --check) the README's values table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the README table is stale")
    args = parser.parse_args(argv)
    values_file, readme_file = CHART / "values.yaml", CHART / "README.md"
    bad = undocumented(documented_keys(values_file.read_text()))
    if bad:
        print(f"values without a comment starting with their name: {', '.join(bad)}", file=sys.stderr)
        return 1
    current = readme_file.read_text()
    wanted = render_readme(current, values_file)
    if args.check:
        if current != wanted:
            print(
                "helm/ecs-scan-operator/README.md values table is stale: run `make helm-docs`",
                file=sys.stderr,
            )
            return 1
        return 0
    readme_file.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
