"""Regenerate the build-only go.mod files (+ go.sum) for another Kubernetes release.

    python -m tests.cluster.gen_gomod v1.36.3 [--etcd v3.6.8]

tests/cluster/k8s/go.mod: reads k8s.io/kubernetes' own go.mod from the module
proxy, takes its list of staging modules (the ``k8s.io/x => ./staging/src/k8s.io/x``
replaces, which do not apply to a dependent module) and maps each one to its
published version ``v0.X.Y``.

tests/cluster/etcd/go.mod: requires go.etcd.io/etcd/server/v3 at the etcd
version kubeadm of that release deploys (``DefaultEtcdVersion`` in
cmd/kubeadm/app/constants), unless ``--etcd`` says otherwise.

Then runs ``go mod tidy`` in both.  The next ``make cluster-bins`` builds the
new versions into their own cache directory.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from tests.cluster import build

ETCD_GOMOD = """\
// Build-only module: its one job is to build the etcd server version that the
// pinned Kubernetes release supports (kubeadm's DefaultEtcdVersion) from the
// go.etcd.io/etcd/server/v3 module on the Go module proxy.  Regenerate with:
//     python -m tests.cluster.gen_gomod v1.X.Y
module ecs-scan-operator/tests/cluster/etcd

go 1.24

tool go.etcd.io/etcd/server/v3

require go.etcd.io/etcd/server/v3 {etcd}
"""

HEADER = """\
// Build-only module: its one job is to build the real kube-apiserver,
// kube-controller-manager and kube-scheduler of a pinned Kubernetes release from
// the k8s.io/kubernetes module on the Go module proxy.  Nothing of Kubernetes'
// source is committed here.
//
// k8s.io/kubernetes refers to its staging modules (k8s.io/api, ...) as v0.0.0
// with replace directives into ./staging; those replaces do not apply to a
// dependent module, so we map each staging module to its published version
// v0.X.Y (Kubernetes v1.X.Y).  Regenerate for another release with:
//     python -m tests.cluster.gen_gomod v1.X.Y
module ecs-scan-operator/tests/cluster/k8s
"""


def _go() -> tuple[str, dict[str, str]]:
    go = build.find_go()
    env = build._go_env(go)
    env["GOFLAGS"] = "-buildvcs=false"  # go mod tidy must be allowed to write go.mod/go.sum
    return go, env


def _download(module: str, version: str) -> dict[str, str]:
    go, env = _go()
    out = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        env=env, cwd=build.GOMOD_DIR, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    info: dict[str, str] = json.loads(out)
    return info


def generate(version: str) -> tuple[str, str]:
    """Return (k8s go.mod text, kubeadm's default etcd version vX.Y.Z) for a release."""
    m = re.fullmatch(r"v1\.(\d+)\.(\d+)", version)
    if not m:
        raise SystemExit(f"expected a release like v1.36.3, got {version!r}")
    staging_version = f"v0.{m.group(1)}.{m.group(2)}"
    info = _download("k8s.io/kubernetes", version)
    upstream = Path(info["GoMod"]).read_text()
    go_directive = re.search(r"^go\s+(\S+)", upstream, re.M)
    godebug = re.search(r"^godebug\s+.*$", upstream, re.M)
    staging = re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", upstream, re.M)
    lines = [HEADER, f"go {go_directive.group(1) if go_directive else '1.26.0'}\n"]
    if godebug:
        lines.append(godebug.group(0) + "\n")
    # one module graph for the three: they are built at the same versions
    lines.append("tool (")
    lines += [f"\t{pkg}" for pkg in (build.APISERVER_PKG, build.CONTROLLER_MANAGER_PKG, build.SCHEDULER_PKG)]
    lines.append(")\n")
    lines.append(f"require k8s.io/kubernetes {version}\n")
    lines.append("replace (")
    lines += [f"\t{mod} => {mod} {staging_version}" for mod in staging]
    lines.append(")\n")
    constants = Path(info["Dir"]) / "cmd/kubeadm/app/constants/constants.go"
    em = re.search(r'DefaultEtcdVersion\s*=\s*"(\d+\.\d+\.\d+)', constants.read_text())
    if not em:
        raise SystemExit(f"no DefaultEtcdVersion in {constants}; pass --etcd vX.Y.Z")
    return "\n".join(lines), "v" + em.group(1)


def _tidy(gomod_dir: Path) -> None:
    go, env = _go()
    (gomod_dir / "go.sum").write_text("")
    subprocess.run([go, "mod", "tidy"], env=env, cwd=gomod_dir, check=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.cluster.gen_gomod", description=__doc__.split("\n")[0])
    ap.add_argument("version", help="Kubernetes release, e.g. v1.36.3")
    ap.add_argument("--etcd", help="etcd release (default: kubeadm's DefaultEtcdVersion of that release)")
    args = ap.parse_args(argv)
    k8s_text, etcd_default = generate(args.version)
    etcd = args.etcd or etcd_default
    (build.GOMOD_DIR / "go.mod").write_text(k8s_text)
    _tidy(build.GOMOD_DIR)
    (build.ETCD_GOMOD_DIR / "go.mod").write_text(ETCD_GOMOD.format(etcd=etcd))
    _tidy(build.ETCD_GOMOD_DIR)
    print(
        f"wrote {build.GOMOD_DIR / 'go.mod'} (Kubernetes {args.version}) and "
        f"{build.ETCD_GOMOD_DIR / 'go.mod'} (etcd {etcd})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
