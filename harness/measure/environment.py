"""The environment a number was measured in: GPU, driver, CUDA, library versions, clocks.

Clocks and throttle reasons come from NVML (``pynvml`` from the nvidia-ml-py package) when present.
"""
from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "triton", "flash-attn", "flash-attn-4", "flash_attn_3", "fa3-fwd", "flashinfer-python",
            "flashinfer-cubin", "flashinfer-jit-cache", "apache-tvm-ffi", "nvidia-cudnn-frontend",
            "nvidia-cutlass-dsl", "numpy", "pandas", "plotly", "nvidia-ml-py", "flashcore")

_THROTTLE_NAMES = {
    0x1: "gpu_idle", 0x2: "applications_clocks", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
    0x10: "sync_boost", 0x20: "sw_thermal", 0x40: "hw_thermal", 0x80: "hw_power_brake",
    0x100: "display_clocks",
}


def _nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:
        return None


def nvml_handle(nv: Any, index: int = 0) -> Any:
    """NVML's handle of CUDA device ``index`` of this process. NVML counts every GPU of the machine while
    CUDA counts those in CUDA_VISIBLE_DEVICES: a worker pinned to GPU 2 (``flashcore run --gpus``) must read
    the clocks of GPU 2, not of GPU 0."""
    entries = [e.strip() for e in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if e.strip()]
    if index < len(entries):
        entry = entries[index]
        return (nv.nvmlDeviceGetHandleByIndex(int(entry)) if entry.isdigit()
                else nv.nvmlDeviceGetHandleByUUID(entry))  # GPU-... or MIG-...
    return nv.nvmlDeviceGetHandleByIndex(index)


def clocks(index: int = 0) -> dict[str, Any] | None:
    """SM/memory clocks (MHz), temperature, power and active throttle reasons, or None without NVML."""
    nv = _nvml()
    if nv is None:
        return None
    try:
        h = nvml_handle(nv, index)
        reasons = nv.nvmlDeviceGetCurrentClocksThrottleReasons(h)
        return {
            "sm_mhz": nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
            "mem_mhz": nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
            "sm_max_mhz": nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM),
            "temp_c": nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
            "power_w": nv.nvmlDeviceGetPowerUsage(h) / 1000.0,
            "throttle": [name for bit, name in _THROTTLE_NAMES.items() if reasons & bit],
        }
    except Exception as exc:  # NVML present but a query unsupported here
        return {"error": str(exc)}


def throttle_ns(index: int = 0) -> dict[str, int] | None:
    """NVML's running counters of time the GPU spent held below its clocks by the power and the thermal
    limits (ns since driver load). The difference over a measurement says whether its samples ran at
    full clocks, which the clock snapshots before and after cannot. None without NVML or the query.
    They do not count the software power cap: on the H100 (driver 580) they read 0 over cells whose clock
    snapshots showed ``sw_power_cap``."""
    nv = _nvml()
    if nv is None:
        return None
    try:
        h = nvml_handle(nv, index)
        return {name: int(nv.nvmlDeviceGetViolationStatus(h, policy).violationTime)
                for name, policy in (("power", nv.NVML_PERF_POLICY_POWER), ("thermal", nv.NVML_PERF_POLICY_THERMAL))}
    except Exception:  # noqa: BLE001 - NVML present but the query unsupported on this GPU or driver
        return None


@dataclass(frozen=True)
class NvmlSample:
    t: float  # time.perf_counter() when read
    sm_mhz: int
    reasons: int  # clock-event reason bits (see _THROTTLE_NAMES)
    temp_c: int
    power_w: float


class NvmlPoller:
    """NVML read every ``period_s`` on a thread while a ``with`` block runs (``samples``): clock dips
    shorter than a cell show here and not in the snapshots before and after it. Reads nothing without
    NVML or with a period of 0."""

    def __init__(self, period_s: float, index: int = 0) -> None:
        self.period_s, self.index = period_s, index
        self.samples: list[NvmlSample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> NvmlPoller:
        nv = _nvml() if self.period_s > 0 else None
        if nv is not None:
            self._thread = threading.Thread(target=self._run, args=(nv, nvml_handle(nv, self.index)),
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self, nv: Any, h: Any) -> None:
        while not self._stop.is_set():
            self.samples.append(NvmlSample(time.perf_counter(), nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
                                           int(nv.nvmlDeviceGetCurrentClocksThrottleReasons(h)),
                                           nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
                                           nv.nvmlDeviceGetPowerUsage(h) / 1000.0))
            time.sleep(self.period_s)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def throttled_ms(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, float] | None:
    """Milliseconds of power and thermal throttling between two ``throttle_ns`` readings."""
    if not before or not after:
        return None
    return {k: round((after[k] - before[k]) / 1e6, 3) for k in before if k in after}


def git_commit(root: Path | None = None) -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes); where the tree is a copy without git
    history (a remote GPU machine), ``FLASHCORE_GIT_COMMIT`` names it."""
    if os.environ.get("FLASHCORE_GIT_COMMIT"):
        return os.environ["FLASHCORE_GIT_COMMIT"]
    root = root or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def peer_builds() -> dict[str, str]:
    """Which build of each optional peer library this process would use: the FA3 module (the full
    flash_attn_interface or the forward-only fa3_fwd_interface; this imports it), FlashInfer's version and
    JIT cache directory, the cuDNN frontend's version (neither of the last two imported here)."""
    import importlib.util

    from harness.backends.flash_attn import fa3_description

    out = {"fa3": fa3_description()}
    if importlib.util.find_spec("flashinfer") is not None:
        base = os.environ.get("FLASHINFER_WORKSPACE_BASE") or str(Path.home())
        found = versions()
        out["flashinfer"] = (f"flashinfer-python {found.get('flashinfer-python', '?')}, JIT cache "
                             f"{Path(base) / '.cache' / 'flashinfer'}, FLASHINFER_CUDA_ARCH_LIST="
                             f"{os.environ.get('FLASHINFER_CUDA_ARCH_LIST', '(unset: the visible GPUs)')}")
    else:
        out["flashinfer"] = "none (flashinfer not installed)"
    if importlib.util.find_spec("cudnn") is not None:
        out["cudnn_frontend"] = f"nvidia-cudnn-frontend {versions().get('nvidia-cudnn-frontend', '?')}"
    else:
        out["cudnn_frontend"] = "none (nvidia-cudnn-frontend not installed)"
    return out


def collect() -> dict[str, Any]:
    """Everything about this process's machine; call in the process that uses the GPU."""
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "packages": versions(),
        "git_commit": git_commit(),
        "peer_builds": peer_builds(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update({
            "gpu": props.name,
            "gpu_count": torch.cuda.device_count(),
            "sm_count": props.multi_processor_count,
            "capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "l2_bytes": getattr(props, "L2_cache_size", None),
            "cudnn": torch.backends.cudnn.version(),
        })
        nv = _nvml()
        if nv is not None:
            try:
                env["driver"] = nv.nvmlSystemGetDriverVersion()
                h = nvml_handle(nv, 0)
                env["power_limit_w"] = nv.nvmlDeviceGetPowerManagementLimit(h) / 1000.0
            except Exception:
                pass
        env["clocks"] = clocks(0)
    else:
        env["gpu"] = "none (CPU)"
    return env
