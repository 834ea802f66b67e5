"""The declarative table of flashcore's kernels: source, torch op, and what each claims about its
machine code. ``flashcore build`` compiles each source and reports the claims next to what ptxas and
the SASS say (``check_claims`` lists the differences).

Claims are checked per kernel function (``__global__``) of the source whose demangled name matches
``functions`` (a regular expression; default: all):
  * ``requires``: SASS counters (see ``harness.tools.build.sass.COUNTERS``) that must be > 0;
  * ``forbids``: SASS counters that must be 0;
  * ``spill_free``: no stack frame, no spill stores/loads (ptxas) and no LDL/STL (SASS);
  * ``forbid_diagnostics``: ptxas diagnostic codes that must not appear for the source at all.

``launch_configs`` give the threads and dynamic shared memory per launch configuration. For phase4 and
phase4x the numbers are also ``static_assert``-ed in the .cu (a change to one without the other fails
to compile).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
KERNELS_DIR = REPO_ROOT / "kernels"
INCLUDE_DIRS = (KERNELS_DIR / "include", KERNELS_DIR)
BINDING = KERNELS_DIR / "binding.cpp"


@dataclass(frozen=True)
class LaunchConfig:
    name: str
    threads: int
    dynamic_smem_bytes: int
    note: str = ""


@dataclass(frozen=True)
class KernelSpec:
    name: str  # short name, also the op name: torch.ops.flashcore.<name>
    source: str  # path relative to the repository root
    description: str
    spill_free: bool = True
    requires: tuple[str, ...] = ()
    forbids: tuple[str, ...] = ()
    forbid_diagnostics: tuple[str, ...] = ()
    functions: str = ""  # regex over demangled kernel names the claims apply to ("" = all)
    launch_configs: tuple[LaunchConfig, ...] = ()
    #: compiled into the extension only when present (another engineer's work in progress); the op is
    #: then defined through the compile definition ``define``
    optional: bool = False
    define: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def op(self) -> str:
        return f"flashcore::{self.name}"

    @property
    def path(self) -> Path:
        return REPO_ROOT / self.source

    def exists(self) -> bool:
        return self.path.is_file()


def _phase4_smem(d: int) -> int:
    # mirrors Phase4Cfg<D> in kernels/phase4.cu: fp32 Q[64][D+4], K[BN][D+4], V[BN][D], P[64][BN+4]
    bn = 64 if d == 64 else 32
    return 4 * (64 * (d + 4) + bn * (d + 4) + bn * d + 64 * (bn + 4))


def _phase4x_smem(d: int) -> int:
    # mirrors Phase4xCfg<D> in kernels/phase4x.cu: 16-bit Q[64][D+8], K,V[2][64][D+8], P[64][72];
    # fp32 S/O union [64][max(80, D+16)]
    return 2 * 64 * (d + 8) + 4 * 2 * 64 * (d + 8) + 4 * 64 * max(80, d + 16) + 2 * 64 * 72


KERNELS: tuple[KernelSpec, ...] = (
    KernelSpec(
        name="phase4",
        source="kernels/phase4.cu",
        description="seeds' Milestone 1: fused, online softmax, scalar FP32 FMA (no tensor cores)",
        spill_free=True,
        requires=("FFMA", "MUFU.EX2"),
        forbids=("HMMA", "HGMMA", "LDL", "STL"),
        launch_configs=(
            LaunchConfig("d64 BM64 BN64", 256, _phase4_smem(64)),
            LaunchConfig("d128 BM64 BN32", 256, _phase4_smem(128)),
        ),
    ),
    KernelSpec(
        name="phase4x",
        source="kernels/phase4x.cu",
        description="seeds' Phase 4.X: WMMA 16x16x16, cp.async double buffer, 64x64 tiles, 8 warps",
        spill_free=True,
        requires=("HMMA", "LDGSTS", "MUFU.EX2"),
        forbids=("HGMMA", "LDL", "STL"),
        launch_configs=(
            LaunchConfig("d64 BM64 BN64 2 stages", 256, _phase4x_smem(64)),
            LaunchConfig("d128 BM64 BN64 2 stages", 256, _phase4x_smem(128)),
        ),
    ),
    KernelSpec(
        name="bleeding_edge",
        source="kernels/bleeding_edge.cu",
        description="Hopper: TMA + mbarrier pipeline, warp-specialized wgmma, setmaxnreg",
        spill_free=True,
        requires=("HGMMA", "UTMALDG", "USETMAXREG"),
        forbids=("LDL", "STL"),
        forbid_diagnostics=("C7508", "C7511", "C7515"),
        functions=r"fwd_kernel",
        # dynamic smem is Cfg::SMEM_BYTES in kernels/bleeding_edge/mainloop.cuh (owned there)
        launch_configs=(),
        optional=True,
        define="FLASHCORE_HAS_BLEEDING_EDGE",
    ),
)


def by_name(name: str) -> KernelSpec:
    for k in KERNELS:
        if k.name == name:
            return k
    raise KeyError(f"unknown kernel {name!r}: allowed {', '.join(k.name for k in KERNELS)}")


def present() -> list[KernelSpec]:
    """Kernels whose source exists (an optional one may be missing)."""
    return [k for k in KERNELS if k.exists()]
