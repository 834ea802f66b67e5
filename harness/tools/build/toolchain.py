"""Where the CUDA tools are, the nvcc flags, the build cache, and the source hash that keys it."""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from harness.tools.build.kernels import INCLUDE_DIRS, KERNELS_DIR, REPO_ROOT

CACHE_ENV = "FLASHCORE_CACHE"
GENCODE = "-gencode=arch=compute_90a,code=sm_90a"
#: flags of every kernel compile (the report's and the torch extension's)
NVCC_FLAGS: tuple[str, ...] = (GENCODE, "-O3", "-std=c++17", "-Xptxas", "-v", "-lineinfo")
SOURCE_SUFFIXES = (".cu", ".cuh", ".h", ".hpp", ".cpp")


class ToolchainError(RuntimeError):
    """A CUDA tool the build needs is missing."""


def cache_dir() -> Path:
    """``$FLASHCORE_CACHE`` or ``~/.cache/flashcore/build``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "flashcore" / "build"


def include_flags() -> list[str]:
    return [f"-I{d}" for d in INCLUDE_DIRS]


def _cuda_homes() -> list[Path]:
    homes = [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH")]
    return [Path(h) for h in homes if h] + [Path("/usr/local/cuda")]


@functools.cache
def find_nvcc() -> str | None:
    for home in _cuda_homes():
        p = home / "bin" / "nvcc"
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return shutil.which("nvcc")


def _executable(p: Path) -> str | None:
    """``p`` as a runnable path, restoring the executable bit that wheels sometimes lose; None if absent."""
    if not p.is_file():
        return None
    if not os.access(p, os.X_OK):
        try:
            p.chmod(p.stat().st_mode | 0o111)
        except OSError:
            return None
    return str(p)


def _wheel_binary(dist: str, name: str) -> str | None:
    """``bin/<name>`` inside the installed wheel ``dist`` (e.g. ``nvidia-cuda-nvdisasm``), from its RECORD."""
    from importlib.metadata import PackageNotFoundError, files

    try:
        entries = files(dist) or ()
    except PackageNotFoundError:
        return None
    for f in entries:
        if f.name == name and f.parent.name == "bin":
            found = _executable(Path(str(f.locate())))
            if found:
                return found
    return None


def _find_tool(name: str, wheel: str) -> str | None:
    """PATH, then the CUDA home, then the binary inside the PyPI wheel ``wheel``."""
    found = shutil.which(name)
    if found:
        return found
    for home in _cuda_homes():
        found = _executable(home / "bin" / name)
        if found:
            return found
    return _wheel_binary(wheel, name)


@functools.cache
def find_cuobjdump() -> str | None:
    """PATH, the CUDA home, or the binary inside the ``nvidia-cuda-cuobjdump`` wheel."""
    return _find_tool("cuobjdump", "nvidia-cuda-cuobjdump")


@functools.cache
def find_nvdisasm() -> str | None:
    """The disassembler ``cuobjdump -sass`` runs: PATH, the CUDA home, the ``nvidia-cuda-nvdisasm`` wheel, or
    beside cuobjdump."""
    found = _find_tool("nvdisasm", "nvidia-cuda-nvdisasm")
    if found:
        return found
    cuobjdump = find_cuobjdump()
    return _executable(Path(cuobjdump).parent / "nvdisasm") if cuobjdump else None


def cuobjdump_env(nvdisasm: str | None) -> dict[str, str]:
    """The environment to run cuobjdump in: it looks for nvdisasm on PATH or in NVDISASM_PATH only, and the
    wheel's nvdisasm is on neither, so both name its folder."""
    env = dict(os.environ)
    if nvdisasm:
        folder = str(Path(nvdisasm).parent)
        env["PATH"] = os.pathsep.join(p for p in (folder, env.get("PATH", "")) if p)
        env["NVDISASM_PATH"] = folder
    return env


@functools.cache
def find_cxxfilt() -> str | None:
    for name in ("cu++filt", "c++filt"):
        found = shutil.which(name)
        if found:
            return found
    for home in _cuda_homes():
        p = home / "bin" / "cu++filt"
        if p.is_file():
            return str(p)
    return None


@functools.cache
def nvcc_version(nvcc: str) -> str:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False).stdout
    lines = [ln for ln in out.splitlines() if "release" in ln or ln.startswith("Build")]
    return " | ".join(lines) or out.strip()


def demangle(names: list[str]) -> dict[str, str]:
    """Mangled -> demangled through c++filt (identity where it is missing)."""
    tool = find_cxxfilt()
    if not tool or not names:
        return {n: n for n in names}
    out = subprocess.run([tool], input="\n".join(names) + "\n", capture_output=True, text=True, check=False)
    lines = out.stdout.splitlines()
    if out.returncode != 0 or len(lines) != len(names):
        return {n: n for n in names}
    return dict(zip(names, lines))


def kernel_sources() -> list[Path]:
    """Every file under kernels/ that can change a build (sorted, for a stable hash)."""
    return sorted(p for p in KERNELS_DIR.rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES)


def source_hash(extra: tuple[str, ...] = ()) -> str:
    """sha256 over every kernel source (path and bytes), the flags and ``extra`` (tool versions)."""
    h = hashlib.sha256()
    for p in kernel_sources():
        h.update(str(p.relative_to(REPO_ROOT)).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    for s in (*NVCC_FLAGS, *extra):
        h.update(s.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]
