"""Bad input to the CLI, by class: encodings, binary data, size, nesting, aliases, files that are not
files, document counts, huge values, output directories that cannot be written. Every case ends with
exit 2 and one line on stderr naming the reason; never a traceback; never the whole input echoed."""

from __future__ import annotations

import codecs
import io
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecs_scan_operator import cli
from ecs_scan_operator.errors import InvalidPolicy

REPO_ROOT = Path(__file__).resolve().parents[2]

GOOD = (REPO_ROOT / "examples" / "scanpolicy.yaml").read_text(encoding="utf-8")
BARE = """schedule: "@daily"
aws: {region: us-east-1}
taskDefinitions: {include: ["svc-*"]}
report: {s3: {bucket: reports-bucket}}
"""


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _refused(capsys: pytest.CaptureFixture[str], path: Path | str, *words: str) -> str:
    """`validate` and `run` both refuse with exit 2 and a one-line reason holding `words`."""
    for argv in (["validate", "-f", str(path)], ["run", "-f", str(path), "--format", "json"]):
        code, out, err = _run(capsys, *argv)
        assert code == cli.EXIT_BAD_INPUT, (argv, err)
        assert "Traceback" not in err and out == ""
        lines = err.splitlines()
        assert len(lines) == 1, err[:2000]
        assert len(lines[0]) < 700
        for word in words:
            assert word in lines[0], lines[0]
    return lines[0]


def _write(tmp_path: Path, data: bytes, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    "codec",
    ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"],
)
def test_unicode_with_a_byte_order_mark_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], codec: str
) -> None:
    # UTF-16/32 with a BOM (as Windows editors save) is decoded, as YAML itself allows.
    bom = {
        "utf-16-le": codecs.BOM_UTF16_LE,
        "utf-16-be": codecs.BOM_UTF16_BE,
        "utf-32-le": codecs.BOM_UTF32_LE,
        "utf-32-be": codecs.BOM_UTF32_BE,
    }.get(codec, b"")
    path = _write(tmp_path, bom + (GOOD + "# é ✓\n").encode(codec))
    code, out, err = _run(capsys, "validate", "-f", str(path))
    assert (code, err) == (0, "")
    assert out.startswith("default/production-services: valid")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (GOOD.replace("weekdays", "caf\xe9").encode("latin-1"), ["not UTF-8 text", "0xe9", "offset"]),
        (GOOD.encode("cp1252").replace(b"weekdays", b"\x93quoted\x94"), ["not UTF-8 text", "0x93"]),
        (b"schedule: \xc3\x28\n", ["not UTF-8 text", "0xc3"]),  # a broken two-byte sequence
        (b"schedule: \xed\xa0\x80\n", ["not UTF-8 text"]),  # an encoded surrogate
        (b"schedule: '\xf0\x9f\x98'\n", ["not UTF-8 text"]),  # a truncated four-byte sequence
        (codecs.BOM_UTF16_LE + GOOD.encode("utf-16-le")[:-1], ["not UTF-16 text"]),  # an odd byte count
        (codecs.BOM_UTF16_LE + "x: \ud800".encode("utf-16-le", "surrogatepass"), ["not UTF-16 text"]),
        (GOOD.encode("utf-16-le"), ["binary data", "NUL"]),  # UTF-16 without a BOM
        (GOOD.encode("utf-32-be"), ["binary data", "NUL"]),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", ["binary data"]),
        (bytes(range(256)) * 4, ["binary data", "offset 0"]),
        (bytes(range(1, 256)) * 4, ["not UTF-8 text", "0x80"]),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 20, ["binary data"]),  # gzip
        (b"spec: {}\n\x00", ["binary data", "offset 9"]),
    ],
    ids=[
        "latin-1",
        "cp1252",
        "broken-sequence",
        "surrogate",
        "truncated",
        "utf16-odd",
        "utf16-lone-surrogate",
        "utf16-no-bom",
        "utf32-no-bom",
        "png",
        "all-bytes",
        "all-bytes-but-nul",
        "gzip",
        "nul",
    ],
)
def test_undecodable_or_binary_input_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, words: list[str]
) -> None:
    _refused(capsys, _write(tmp_path, data), *words)


def test_control_characters_are_a_yaml_error_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for char in ("\x07", "\x1b", "\x7f", "\ufffe"):
        data = f"schedule: '{char}'\n".encode()
        _refused(capsys, _write(tmp_path, data), "not valid YAML", "unacceptable character", "offset 11")


def test_stdin_gets_the_same_checks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for data, word in ((b"\xff\xfe\x00", "not UTF-16 text"), (b"a: \xe9", "not UTF-8"), (b"", "empty")):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        code, _, err = _run(capsys, "validate", "-f", "-")
        assert code == 2 and len(err.splitlines()) == 1 and word in err, err


# ------------------------------------------------------------------------------ size and structure


def test_a_file_over_one_mebibyte_is_refused_with_its_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = GOOD.encode() + b"#" * (cli.MAX_POLICY_BYTES + 1 - len(GOOD.encode()))
    line = _refused(capsys, _write(tmp_path, data), "1 MiB", str(len(data)))
    assert "1048577 bytes" in line
    # Exactly the limit is still read (and here valid: the rest is a comment).
    code, _, err = _run(capsys, "validate", "-f", str(_write(tmp_path, data[:-1])))
    assert (code, err) == (0, "")


def test_a_device_without_a_size_is_bounded_too(capsys: pytest.CaptureFixture[str]) -> None:
    _refused(capsys, "/dev/zero", "1 MiB")


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 5000 + "]" * 5000,
        "a: " + "{b: " * 5000 + "1" + "}" * 5000,
        "".join(f"{'  ' * i}k{i}:\n" for i in range(200)) + "  " * 200 + "x: 1\n",
        "".join(f"{'  ' * i}- \n" for i in range(300)),
        "[" * 100_000,  # unbalanced as well as deep
    ],
    ids=["flow-sequences", "flow-mappings", "block-mappings", "block-sequences", "unbalanced"],
)
def test_deep_nesting_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    _refused(capsys, _write(tmp_path, text.encode()), "not valid YAML", "nested")


def test_nesting_within_the_limit_is_still_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 30 levels parse; the policy is then invalid for its content, not for its depth.
    text = BARE + "extra: " + "[" * 30 + "]" * 30 + "\n"
    code, _, err = _run(capsys, "validate", "-f", str(_write(tmp_path, text.encode())))
    assert code == 2 and "spec.extra: unknown field" in err


BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    + ["schedule: *i"]
)


@pytest.mark.parametrize(
    "text",
    [
        BILLION_LAUGHS,
        # Fewer aliases, wider: 4 levels of 100.
        "a: &a ["
        + ",".join(["x"] * 100)
        + "]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 100)}]\n" for i in range(3)
        ),
        # Mapping values, not sequences.
        "a: &a {k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x, k8: x, k9: x, k10: x}\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} {{{', '.join(f'k{j}: *{chr(97 + i)}' for j in range(10))}}}\n"
            for i in range(6)
        ),
        "a: &a [1, *a]\n",  # an alias inside its own anchor: infinite once expanded
        "a: &a {k: *a}\n",
    ],
    ids=["billion-laughs", "wide", "mappings", "recursive", "recursive-mapping"],
)
def test_alias_bombs_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    _refused(capsys, _write(tmp_path, text.encode()), "not valid YAML", "aliases expand")


def test_a_few_aliases_are_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = 'schedule: &s "@daily"\naws: &aws {region: us-east-1}\ntaskDefinitions: {include: ["svc-*"]}\n'
    text += "report: {s3: {bucket: reports-bucket}}\n"
    code, out, err = _run(capsys, "validate", "-f", str(_write(tmp_path, text.encode())))
    assert (code, err) == (0, "") and "valid" in out


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ["empty"]),
        ("\n\n   \n", ["empty"]),
        ("# only a comment\n", ["found 0"]),
        ("---\n...\n", ["found 0"]),
        (BARE + "---\n" + BARE, ["found 2"]),
        ("---\n" + BARE + "---\n" + BARE + "---\n" + BARE, ["found 3"]),
        ("a: b: c\n", ["not valid YAML", "line 1"]),
        ("a: 'unterminated\n", ["not valid YAML", "line"]),
        ("a: *nowhere\n", ["not valid YAML", "nowhere"]),
        ("\t- tab\n", ["not valid YAML"]),
        ("!!python/object/apply:os.system ['true']\n", ["not valid YAML"]),
    ],
    ids=[
        "empty",
        "blank",
        "comment",
        "no-document",
        "two-docs",
        "three-docs",
        "bad-mapping",
        "unterminated",
        "unknown-alias",
        "tab",
        "python-tag",
    ],
)
def test_document_shape_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, words: list[str]
) -> None:
    _refused(capsys, _write(tmp_path, text.encode()), *words)


# ---------------------------------------------------------------------------------- not a file


def test_paths_that_cannot_be_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    regular = _write(tmp_path, BARE.encode())
    _refused(capsys, tmp_path, "is a directory")
    _refused(capsys, tmp_path / "missing.yaml", "No such file or directory", "missing.yaml")
    _refused(capsys, regular / "below-a-file.yaml", "Not a directory")
    _refused(capsys, "/proc/self/mem", "cannot read")  # an I/O error (root reads everything else)
    _refused(capsys, "x" * 5000, "characters)")  # the name is clipped, not echoed whole


# --------------------------------------------------------------------------------- huge values


def test_a_huge_invalid_value_is_not_echoed_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = "* " * 400_000 + "x"  # 800 kB: under the file limit
    text = (
        BARE.replace('"@daily"', f'"{schedule}"') + f"? {'k' * 100_000}\n: 1\n"
    )  # an explicit key: plain ones stop at 1024
    code, _, err = _run(capsys, "validate", "-f", str(_write(tmp_path, text.encode())))
    assert code == 2 and "Traceback" not in err
    assert len(err) < 2000, len(err)
    assert "spec.schedule: schedule '* * *" in err and "(800001 characters)" in err
    assert "(100000 characters): unknown field" in err


@pytest.mark.parametrize(
    "field",
    [
        'aws: {region: us-east-1, roleArn: "%s"}',
        'timeZone: "%s"',
        'taskDefinitions: {include: ["%s"]}',
        'suppressions: [{vulnerabilityId: "%s", reason: r, expires: "2099-01-01"}]',
    ],
)
def test_every_echoed_value_is_clipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    value = "Z" * 50_000
    key = field.split(":", maxsplit=1)[0]
    text = "\n".join(line for line in BARE.splitlines() if not line.startswith(key)) + "\n" + field % value
    code, _, err = _run(capsys, "validate", "-f", str(_write(tmp_path, text.encode())))
    assert code == 2 and "Traceback" not in err
    assert "Z" * 101 not in err and len(err) < 2000, err[:3000]


# ------------------------------------------------------------------------------------- output


def test_output_dir_that_cannot_be_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _write(tmp_path, BARE.encode())
    regular = _write(tmp_path, b"x", "a-file")
    cases = [
        (regular, "exists and is not a directory"),
        (regular / "below", "is a file, not a directory"),
        (regular / "deeper" / "still", "is a file, not a directory"),
        (Path("/proc/self/reports"), "cannot write there"),
        (Path("/proc/version") / "x", "is a file, not a directory"),
        (tmp_path / "nul\x00byte", "not a valid path"),
        (tmp_path / ("n" * 300), "cannot write there"),  # a name over NAME_MAX
    ]
    for out_dir, reason in cases:
        code, out, err = _run(
            capsys, "run", "-f", str(policy), "--output-dir", str(out_dir), "--format", "json"
        )
        assert code == cli.EXIT_BAD_INPUT, (out_dir, err)
        assert "Traceback" not in err and out == ""
        assert len(err.splitlines()) == 1 and reason in err and "--output-dir" in err, err
        assert str(out_dir)[:50].replace("\x00", "") in err.replace("\x00", "") or "characters)" in err


def test_a_short_state_key_is_refused_without_echoing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECS_SCAN_STATE_KEY", "short-secret")
    code, out, err = _run(capsys, "run", "-f", str(_write(tmp_path, BARE.encode())), "--format", "json")
    assert code == 2 and out == "" and "short-secret" not in err
    assert err.strip() == "error: ECS_SCAN_STATE_KEY: must be at least 32 characters"


# --------------------------------------------------------------------------------- any bytes


YAMLISH = st.text(
    alphabet=st.sampled_from([*list("ab:-[]{}&*!|>'\"#,?\n\t "), "\x00", "é", "\ufeff"]), max_size=300
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=600), YAMLISH.map(lambda t: t.encode("utf-8"))))
def test_any_bytes_load_or_fail_with_one_line(tmp_path: Path, data: bytes) -> None:
    # Whatever the file holds, load_policy returns a policy or raises InvalidPolicy (exit 2), each
    # problem on one line; nothing else escapes.
    path = _write(tmp_path, data)
    try:
        cli.load_policy(str(path))
    except InvalidPolicy as exc:
        assert exc.errors
        assert all("\n" not in str(e) and len(str(e)) < 700 for e in exc.errors)
