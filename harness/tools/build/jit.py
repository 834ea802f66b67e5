"""``load_ops``: JIT-build the torch extension (kernels/binding.cpp + every present kernel .cu) with
torch.utils.cpp_extension + ninja, cached by source hash, and register fake (meta) implementations so
``torch.compile`` can trace the ops."""
from __future__ import annotations

import os
import threading

from harness.tools.build import toolchain
from harness.tools.build.kernels import BINDING, INCLUDE_DIRS, KERNELS, KernelSpec, present

#: comma-separated kernel names to build into the extension (default: every present source), e.g. to
#: leave out a work-in-progress optional kernel that does not compile right now
SELECT_ENV = "FLASHCORE_KERNELS"

_lock = threading.Lock()
_loaded: list[str] | None = None  # op names, once loaded


class BuildError(RuntimeError):
    """The torch extension could not be built or loaded."""


def _cuda_flags(specs: list[KernelSpec]) -> list[str]:
    defines = [f"-D{s.define}" for s in specs if s.define]
    return [
        toolchain.GENCODE, "-O3", "-std=c++17", "-lineinfo",
        # torch adds these for its own headers; the kernels include none and are built (and reported by
        # build_all) without them, so undo them to compile the same code in both places
        "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
        "-U__CUDA_NO_BFLOAT16_CONVERSIONS__", "-U__CUDA_NO_HALF2_OPERATORS__",
        *defines,
    ]


def _op_defined(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.flashcore, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def _register_fakes(names: list[str]) -> None:
    import torch

    def make(name: str):
        def fake(q, k, v, softmax_scale, causal, return_lse):
            o = q.new_empty(q.shape)  # contiguous, as the ops allocate it (not q's strides)
            if return_lse:
                lse = q.new_empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32)
            else:
                lse = q.new_empty((0,), dtype=torch.float32)
            return o, lse
        fake.__name__ = f"{name}_fake"
        return fake

    for name in names:
        try:
            torch.library.register_fake(f"flashcore::{name}")(make(name))
        except RuntimeError as exc:  # already registered (a second load in one process)
            if "already" not in str(exc).lower():
                raise


def load_ops(verbose: bool = False) -> None:
    """Make ``torch.ops.flashcore.{phase4, phase4x[, bleeding_edge]}`` available in this process.

    Builds (or reuses from ``<cache>/ext/<hash>``) one extension from kernels/binding.cpp and the kernel
    sources present (or those named in ``$FLASHCORE_KERNELS``); the bleeding-edge op exists only when
    kernels/bleeding_edge.cu does and is selected. Idempotent.
    Raises ``BuildError`` with the compiler output's tail when the build fails."""
    global _loaded
    with _lock:
        if _loaded is not None:
            return
        import torch

        specs = present()
        if os.environ.get(SELECT_ENV):
            wanted = {n.strip() for n in os.environ[SELECT_ENV].split(",") if n.strip()}
            unknown = wanted - {s.name for s in KERNELS}
            if unknown:
                raise BuildError(f"{SELECT_ENV} names unknown kernels {sorted(unknown)}: allowed "
                                 f"{', '.join(s.name for s in KERNELS)}")
            specs = [s for s in specs if s.name in wanted]
        names = [s.name for s in specs]
        if all(_op_defined(n) for n in names):  # already in the process (e.g. loaded by another path)
            _register_fakes(names)
            _loaded = names
            return
        if toolchain.find_nvcc() is None:
            raise BuildError("nvcc not found: the flashcore ops are built at first use and need the CUDA "
                             "toolkit (set CUDA_HOME or PATH)")
        cuda_flags = _cuda_flags(specs)
        nvcc = toolchain.find_nvcc() or ""
        digest = toolchain.source_hash(("ext", torch.__version__, str(torch.version.cuda),
                                        toolchain.nvcc_version(nvcc), *cuda_flags, *names))
        build_dir = toolchain.cache_dir() / "ext" / digest
        build_dir.mkdir(parents=True, exist_ok=True)
        sources = [str(BINDING), *(str(s.path) for s in specs)]
        defines = [f"-D{s.define}" for s in specs if s.define]
        if "CUDA_HOME" not in os.environ and nvcc:
            # cpp_extension reads CUDA_HOME when first imported: point it at build_all's toolkit
            os.environ["CUDA_HOME"] = os.path.dirname(os.path.dirname(nvcc))
        from torch.utils.cpp_extension import load

        try:
            load(
                name=f"flashcore_ops_{digest}",
                sources=sources,
                extra_cflags=["-O3", *defines],
                extra_cuda_cflags=cuda_flags,
                extra_include_paths=[str(d) for d in INCLUDE_DIRS],
                build_directory=str(build_dir),
                is_python_module=False,
                with_cuda=True,
                verbose=verbose,
            )
        except Exception as exc:
            raise BuildError(f"building the flashcore torch extension in {build_dir} failed: "
                             f"{type(exc).__name__}: {str(exc)[-6000:]}") from exc
        missing = [n for n in names if not _op_defined(n)]
        if missing:
            raise BuildError(f"the extension loaded but does not define flashcore::{', '.join(missing)}")
        _register_fakes(names)
        _loaded = names


def loaded_ops() -> list[str]:
    """Op names loaded by ``load_ops`` (empty before)."""
    return list(_loaded or [])
