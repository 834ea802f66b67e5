"""Backends that fault on purpose, to prove that a fault is contained to its cell.

Each computes attention correctly on small problems and faults only where ``seqlen_q`` is at least
``FLASHCORE_FAULT_MIN_SEQLEN`` (default 1024), so a suite shows the faults in the middle of a run,
with good cells before and after them. The fault happens in the first call of the timed callable (the
first correctness run), as it would in a broken kernel.

On a GPU the CUDA faults are real: a one-thread PTX kernel, loaded through the driver API (no compiler
needed), stores through a wild pointer (illegal address), through a misaligned pointer (misaligned
address), or executes ``trap`` (unspecified launch failure). Each leaves the CUDA context unusable, so
the worker must be replaced. Without a GPU they are simulated: the call raises the error PyTorch raises
for that fault, with the same message, and the worker goes the same way.

Not registered by default: name them in ``FLASHCORE_BACKENDS`` (see ``harness.testing``).
"""
from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable

import torch

from harness.backends.base import Backend, RunFn
from harness.spec import attention_math
from harness.spec.problem import Problem

MIN_SEQLEN_ENV = "FLASHCORE_FAULT_MIN_SEQLEN"
DEFAULT_MIN_SEQLEN = 1024


def min_seqlen() -> int:
    return int(os.environ.get(MIN_SEQLEN_ENV, DEFAULT_MIN_SEQLEN))


# -- a tiny PTX module: no nvcc, no torch headers; the driver JIT-compiles it ------------------------
_PTX = rb"""
.version 8.0
.target sm_80
.address_size 64

.visible .entry flashcore_fault_poke(.param .u64 fc_addr)
{
    .reg .b32 %r<2>;
    .reg .b64 %rd<2>;
    ld.param.u64 %rd1, [fc_addr];
    mov.u32 %r1, 1;
    st.volatile.u32 [%rd1], %r1;
    ret;
}

.visible .entry flashcore_fault_trap()
{
    trap;
    ret;
}
""" + b"\0"

_driver: dict[str, object] = {}


def _cu() -> ctypes.CDLL:
    lib = _driver.get("lib")
    if lib is None:
        lib = ctypes.CDLL("libcuda.so.1")
        lib.cuModuleLoadData.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p]
        lib.cuModuleGetFunction.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_char_p]
        lib.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]
        lib.cuGetErrorString.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        _driver["lib"] = lib
    return lib  # type: ignore[return-value]


def _check(res: int, what: str) -> None:
    if res != 0:
        msg = ctypes.c_char_p()
        _cu().cuGetErrorString(res, ctypes.byref(msg))
        raise RuntimeError(f"{what}: CUDA driver error {res} ({(msg.value or b'?').decode()})")


def _function(name: str) -> ctypes.c_void_p:
    """The kernel ``name`` of the PTX module, loaded into torch's (primary, current) context."""
    key = f"fn:{name}"
    if key not in _driver:
        torch.zeros(1, device="cuda")  # torch's context exists and is current on this thread
        lib = _cu()
        if "module" not in _driver:
            mod = ctypes.c_void_p()
            _check(lib.cuModuleLoadData(ctypes.byref(mod), _PTX), "cuModuleLoadData")
            _driver["module"] = mod
        fn = ctypes.c_void_p()
        _check(lib.cuModuleGetFunction(ctypes.byref(fn), _driver["module"], name.encode()), "cuModuleGetFunction")
        _driver[key] = fn
    return _driver[key]  # type: ignore[return-value]


def launch(name: str, *u64_args: int) -> None:
    """Launch one thread of kernel ``name`` on torch's current stream (asynchronous, like any kernel)."""
    fn = _function(name)
    vals = [ctypes.c_uint64(a) for a in u64_args]
    params = (ctypes.c_void_p * max(1, len(vals)))(*[ctypes.cast(ctypes.byref(v), ctypes.c_void_p) for v in vals])
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    _check(_cu().cuLaunchKernel(fn, 1, 1, 1, 1, 1, 1, 0, stream, params if vals else None, None), "cuLaunchKernel")


def _simulated(message: str) -> RuntimeError:
    err = getattr(torch, "AcceleratorError", RuntimeError)
    try:
        return err(f"CUDA error: {message} (simulated: no GPU in this process)")
    except TypeError:  # an AcceleratorError that wants an error code first
        return RuntimeError(f"CUDA error: {message} (simulated: no GPU in this process)")


class _Faulty(Backend):
    """Right answers below the threshold; the fault at or above it."""

    devices = ("cuda", "cpu")
    fault_doc = ""

    def fault(self, q: torch.Tensor) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        def honest() -> torch.Tensor:
            return attention_math.attention(q, k, v, problem, torch.float32, q.dtype)

        if problem.seqlen_q < min_seqlen():
            return honest
        fault: Callable[[torch.Tensor], None] = self.fault

        def run() -> torch.Tensor:
            out = honest()
            fault(q)
            return out

        return run


class IllegalAddress(_Faulty):
    name = "fault-illegal-address"
    description = "stores through a wild pointer (GPU: PTX kernel → illegal memory access; CPU: simulated)"

    def fault(self, q: torch.Tensor) -> None:
        if q.is_cuda:
            launch("flashcore_fault_poke", 0x100)  # near-null: never mapped, on any GPU
        else:
            raise _simulated("an illegal memory access was encountered")


class Misaligned(_Faulty):
    name = "fault-misaligned"
    description = "4-byte store to an odd address (GPU: misaligned address; CPU: simulated)"

    def fault(self, q: torch.Tensor) -> None:
        if q.is_cuda:
            launch("flashcore_fault_poke", q.data_ptr() + 1)
        else:
            raise _simulated("misaligned address")


class LaunchFailure(_Faulty):
    name = "fault-launch-failure"
    description = "a kernel that executes trap (GPU: unspecified launch failure; CPU: simulated)"

    def fault(self, q: torch.Tensor) -> None:
        if q.is_cuda:
            launch("flashcore_fault_trap")
        else:
            raise _simulated("unspecified launch failure")


class Hang(_Faulty):
    name = "fault-hang"
    description = "never returns (GPU: a kernel spinning ~forever; CPU: an endless loop)"

    def fault(self, q: torch.Tensor) -> None:
        if q.is_cuda:
            torch.cuda._sleep(1 << 62)  # clock cycles: the caller's synchronize never returns
        else:
            while True:
                time.sleep(0.01)


class OutOfMemory(_Faulty):
    name = "fault-oom"
    description = "allocates far beyond memory (GPU: 4 GiB blocks until refused; CPU: one 1 PiB block)"

    def fault(self, q: torch.Tensor) -> None:
        if q.is_cuda:
            hoard = []
            for _ in range(1 << 14):  # 64 TiB: no GPU has it, so this ends in OutOfMemoryError
                hoard.append(torch.empty(4 << 30, dtype=torch.uint8, device=q.device))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory: 64 TiB allocated?")  # pragma: no cover
        torch.empty(1 << 50, dtype=torch.uint8)  # 1 PiB: refused at once, nothing is touched


class Abort(_Faulty):
    name = "fault-abort"
    description = "the process aborts (SIGABRT), as on a failed C++ assertion"

    def fault(self, q: torch.Tensor) -> None:
        os.abort()


class Segfault(_Faulty):
    name = "fault-segfault"
    description = "the host process reads address 0 (SIGSEGV), as a native extension with a bad pointer"

    def fault(self, q: torch.Tensor) -> None:
        ctypes.c_int.from_address(8).value  # noqa: B018 - the read is the point


class Slow(Backend):
    """Not a fault: an honest backend that takes its time (``FLASHCORE_SLOW_S`` seconds per prepare,
    default 0.25), so a test can kill a run in the middle of it."""

    name = "test-slow"
    description = "honest float32 attention that sleeps in prepare (for kill/resume tests)"
    devices = ("cuda", "cpu")

    def prepare(self, problem: Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> RunFn:
        time.sleep(float(os.environ.get("FLASHCORE_SLOW_S", "0.25")))
        return lambda: attention_math.attention(q, k, v, problem, torch.float32, q.dtype)
