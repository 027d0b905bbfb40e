"""Regenerate tests/cluster/k8s/go.mod (+ go.sum) for another Kubernetes release.

    python -m tests.cluster.gen_gomod v1.36.3

Reads k8s.io/kubernetes' own go.mod from the module proxy, takes its list of
staging modules (the ``k8s.io/x => ./staging/src/k8s.io/x`` replaces, which do
not apply to a dependent module) and maps each one to its published version
``v0.X.Y``; then runs ``go mod tidy``.  The next ``make cluster-bins`` rebuilds
kube-apiserver for the new version into its own cache directory.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.cluster import build

HEADER = """\
// Build-only module: its one job is to build the real kube-apiserver of a
// pinned Kubernetes release from the k8s.io/kubernetes module on the Go module
// proxy.  Nothing of Kubernetes' source is committed here.
//
// k8s.io/kubernetes refers to its staging modules (k8s.io/api, ...) as v0.0.0
// with replace directives into ./staging; those replaces do not apply to a
// dependent module, so we map each staging module to its published version
// v0.X.Y (Kubernetes v1.X.Y).  Regenerate for another release with:
//     python -m tests.cluster.gen_gomod v1.X.Y
module ecs-scan-operator/tests/cluster/k8s
"""


def generate(version: str) -> str:
    m = re.fullmatch(r"v1\.(\d+)\.(\d+)", version)
    if not m:
        raise SystemExit(f"expected a release like v1.36.3, got {version!r}")
    staging_version = f"v0.{m.group(1)}.{m.group(2)}"
    go = build.find_go()
    env = build._go_env(go)
    env["GOFLAGS"] = "-buildvcs=false"
    info = json.loads(
        subprocess.run(
            [go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
            env=env, cwd=build.GOMOD_DIR, capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    upstream = Path(info["GoMod"]).read_text()
    go_directive = re.search(r"^go\s+(\S+)", upstream, re.M)
    godebug = re.search(r"^godebug\s+.*$", upstream, re.M)
    staging = re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", upstream, re.M)
    lines = [HEADER, f"go {go_directive.group(1) if go_directive else '1.26.0'}\n"]
    if godebug:
        lines.append(godebug.group(0) + "\n")
    lines.append("tool k8s.io/kubernetes/cmd/kube-apiserver\n")
    lines.append(f"require k8s.io/kubernetes {version}\n")
    lines.append("replace (")
    lines += [f"\t{mod} => {mod} {staging_version}" for mod in staging]
    lines.append(")\n")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    version = argv[0]
    text = generate(version)
    gomod = build.GOMOD_DIR / "go.mod"
    gomod.write_text(text)
    (build.GOMOD_DIR / "go.sum").write_text("")
    go = build.find_go()
    env = build._go_env(go)
    env["GOFLAGS"] = "-buildvcs=false"
    res = subprocess.run([go, "mod", "tidy"], env=env, cwd=build.GOMOD_DIR, check=False)
    if res.returncode != 0:
        # a staging module that is not published for this release: drop it and retry by hand
        print("go mod tidy failed; see the errors above", file=sys.stderr)
        return res.returncode
    print(f"wrote {gomod} for Kubernetes {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
