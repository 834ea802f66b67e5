"""A wheelhouse of the optional peer backends for a GPU node without network.

``flashcore wheelhouse --python 3.12 --platform manylinux_2_28_x86_64 --out DIR`` runs ``pip download``
on a machine with network for the target's Python and platform (binary wheels only, no build on the
node), one backend's packages at a time, then writes beside the wheels:

* ``SHA256SUMS`` of every wheel as downloaded;
* with ``--split-mb N``, each wheel larger than N MiB cut into ``<wheel>.partNNN`` pieces of at most N MiB
  (for transfer limits), the whole wheel removed;
* ``install.sh``, which joins the pieces back, checks every wheel against ``SHA256SUMS`` and runs
  ``pip install --no-index --no-deps`` (into ``--target DIR`` when given one; ``--check`` joins and
  checks only);
* ``wheelhouse.json``: what was asked for and what each file is.

Dependencies are not downloaded (``--no-deps``): the node is expected to have torch and the packages
every backend imports that a CUDA torch install brings (numpy, jinja2, filelock) plus those listed in
``ASSUMED_PRESENT``; ``--deps`` resolves and downloads them too, for the target platform.
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: backend group -> the pinned packages it needs beyond torch: the versions the peer backends were
#: written against (flashinfer 0.6.18.post1 imports with apache-tvm-ffi 0.1.13.post3 and with
#: nvidia-cudnn-frontend 1.32.0; both need tvm-ffi >= 0.1.11)
BACKEND_PACKAGES: dict[str, tuple[str, ...]] = {
    "fa3": ("fa3-fwd==0.0.3",),
    "flashinfer": ("flashinfer-python==0.6.18.post1", "apache-tvm-ffi==0.1.13.post3"),
    "cudnn": ("nvidia-cudnn-frontend==1.32.0",),
    # flashcore's own imports that a GPU image may lack: pydantic (suite and claims schemas) and what it
    # imports; without nvtx the profile target (and so the ncu leg of crosscheck and profile) refuses to run;
    # without plotly (and its narwhals) no dashboards or audit page
    "harness": ("pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types==0.8.0", "typing-inspection==0.4.5",
                "typing-extensions==4.16.0", "nvtx==0.2.17", "plotly==7.1.0", "narwhals==2.29.0"),
}
#: what the backends import that is assumed installed on the node with its CUDA torch (--deps fetches them)
ASSUMED_PRESENT = ("torch", "numpy", "scipy", "einops", "ninja", "packaging", "requests", "tqdm", "tabulate", "click",
                   "nvidia-ml-py", "cuda-bindings")
PART = ".part"
Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


class WheelhouseError(ValueError):
    """A request that cannot be made into a wheelhouse; one line naming what is allowed."""


@dataclass(frozen=True)
class Request:
    python: str  # "3.12"
    platform: str  # "manylinux_2_28_x86_64"
    out: Path
    backends: tuple[str, ...] = tuple(BACKEND_PACKAGES)
    split_mb: float | None = None
    deps: bool = False

    def validate(self) -> None:
        parts = self.python.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts[0] != "3":
            raise WheelhouseError(f"--python {self.python!r}: a CPython version as MAJOR.MINOR, e.g. 3.12")
        if not self.platform or any(c.isspace() for c in self.platform):
            raise WheelhouseError(f"--platform {self.platform!r}: a wheel platform tag, e.g. manylinux_2_28_x86_64")
        unknown = [b for b in self.backends if b not in BACKEND_PACKAGES]
        if unknown or not self.backends:
            raise WheelhouseError(f"--backends {','.join(self.backends)!r}: allowed {', '.join(BACKEND_PACKAGES)}")
        if self.split_mb is not None and not 0 < self.split_mb <= 100_000:
            raise WheelhouseError(f"--split-mb {self.split_mb:g}: a size in MiB above 0 and at most 100000")


_LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def platform_tags(platform: str) -> list[str]:
    """The platform tags a node of ``platform`` installs, for ``pip download --platform``: a glibc 2.28
    node runs manylinux_2_28 wheels and every older manylinux too (fa3-fwd is manylinux_2_24), but pip
    (23.x at least) matches only the tags it is given."""
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not m:
        return [platform]
    glibc, arch = int(m.group(1)), m.group(2)
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, 16, -1)]
    tags += [f"{name}_{arch}" for minor, name in _LEGACY_MANYLINUX.items() if minor <= glibc]
    return tags


def pip_download_command(req: Request, packages: Sequence[str]) -> list[str]:
    """The ``pip download`` for one backend's packages: binary wheels for the target interpreter and
    platform only (``--only-binary=:all:`` is what pip requires with ``--platform``)."""
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", req.python,
           "--implementation", "cp"]
    for tag in [*platform_tags(req.platform), "any"]:
        cmd += ["--platform", tag]
    cmd += ["--dest", str(req.out)]
    if not req.deps:
        cmd.append("--no-deps")
    return [*cmd, *packages]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_file(path: Path, part_bytes: int) -> list[Path]:
    """Cut ``path`` into ``path.part000``… of at most ``part_bytes`` each and remove it."""
    parts = []
    with open(path, "rb") as f:
        for i, block in enumerate(iter(lambda: f.read(part_bytes), b"")):
            part = path.with_name(f"{path.name}{PART}{i:03d}")
            part.write_bytes(block)
            parts.append(part)
    path.unlink()
    return parts


def join_parts(directory: Path) -> list[Path]:
    """Join every ``X.partNNN`` group in ``directory`` back into ``X`` (in part order); the parts are
    removed. What install.sh does, for tests and for nodes with Python but no bash."""
    groups: dict[str, list[Path]] = {}
    for p in sorted(directory.glob(f"*{PART}[0-9][0-9][0-9]")):
        groups.setdefault(p.name.rsplit(PART, 1)[0], []).append(p)
    joined = []
    for name, parts in groups.items():
        target = directory / name
        with open(target, "wb") as out:
            for p in parts:
                out.write(p.read_bytes())
        for p in parts:
            p.unlink()
        joined.append(target)
    return joined


INSTALL_SH = """#!/usr/bin/env bash
# Installs the wheels of this folder on a node without network (written by `flashcore wheelhouse`).
#   bash install.sh                 join split wheels, check SHA256SUMS, pip install into the environment
#   bash install.sh --target DIR    the same, into DIR (then PYTHONPATH=DIR:$PYTHONPATH)
#   bash install.sh --check         join and check only
# PYTHON=/path/to/python picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
target=() check=0
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=(--target "$2"); shift 2 ;;
    --check) check=1; shift ;;
    *) echo "install.sh: unknown argument $1 (allowed: --target DIR, --check)" >&2; exit 2 ;;
  esac
done
shopt -s nullglob
for first in *.part000; do
  whole="${first%.part000}"
  cat "$whole".part[0-9][0-9][0-9] > "$whole.tmp" && mv "$whole.tmp" "$whole" && rm -f "$whole".part[0-9][0-9][0-9]
  echo "joined $whole"
done
sha256sum -c SHA256SUMS
[ "$check" = 1 ] && exit 0
"${PYTHON:-python3}" -m pip install --no-index --no-deps ${target[@]+"${target[@]}"} ./*.whl
"""


def make(req: Request, run: Runner | None = None, log: Callable[[str], None] = print) -> dict:
    """Download, checksum, split and write the install script; returns the manifest. ``run`` runs one
    command (default: subprocess)."""
    run = run or _run
    req.validate()
    req.out.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in req.out.glob("*.whl")}
    commands = []
    for backend in req.backends:
        cmd = pip_download_command(req, BACKEND_PACKAGES[backend])
        commands.append(shlex.join(cmd))
        log(f"{backend}: {' '.join(BACKEND_PACKAGES[backend])}")
        r = run(cmd)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout or "").strip().splitlines()
            raise WheelhouseError(f"pip download for {backend} failed (exit {r.returncode}): "
                                  f"{tail[-1] if tail else 'no output'}")
    wheels = sorted(req.out.glob("*.whl"))
    if not wheels:
        raise WheelhouseError(f"pip download left no wheel in {req.out}")
    files = []
    sums = []
    for w in wheels:
        digest = sha256(w)
        sums.append(f"{digest}  {w.name}")
        entry: dict = {"wheel": w.name, "bytes": w.stat().st_size, "sha256": digest,
                       "new": w.name not in before, "parts": []}
        if req.split_mb is not None and w.stat().st_size > req.split_mb * 2**20:
            entry["parts"] = [p.name for p in split_file(w, int(req.split_mb * 2**20))]
        files.append(entry)
    (req.out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    script = req.out / "install.sh"
    script.write_text(INSTALL_SH)
    script.chmod(0o755)
    manifest = {"python": req.python, "platform": req.platform, "backends": list(req.backends),
                "packages": {b: list(BACKEND_PACKAGES[b]) for b in req.backends}, "deps": req.deps,
                "assumed_present": [] if req.deps else list(ASSUMED_PRESENT), "split_mb": req.split_mb,
                "pip_commands": commands, "files": files}
    (req.out / "wheelhouse.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
