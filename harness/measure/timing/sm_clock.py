"""The clock the SMs ran at while a cell was timed, read from the hold that precedes every sample.

The hold is a spin of a fixed number of SM cycles (``torch.cuda._sleep``); timed by CUDA events, its
duration is ``offset + cycles / f``. The offset (the event pair and the launch, some microseconds) is
found once per cell from holds of two lengths; every sample's hold then gives the effective clock just
before that sample ran. On an H100 under sustained load the power limiter takes the clock from 1980 MHz
down to 1850–1950 MHz, and at times the SMs run slower than the clock NVML reports; kernel time follows
the effective clock (a kernel's cycle count stays put), so a median that moved between runs with the
clock moved because the GPU did, not the kernel.

The probe is not exact: on the H100 it read up to 1.2% below a spin timed by the host's clock, and in
14-21% of a suite's cells more than 1% above the maximum (kept as suspect, never as the clock). It
tells a move of several percent, not one of 1-2%.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import median

import torch

from harness.measure.timing.clock_bound import above_max

_LONG = 4  # the calibration's second hold is this many times the first
_LEAD_MS = 2.0


def nominal_hz() -> float:
    """The clock the hold's cycle count is computed from (the device's maximum)."""
    try:
        return torch.cuda.get_device_properties(torch.cuda.current_device()).clock_rate * 1e3  # kHz → Hz
    except AttributeError:
        return 1.98e9


def cycles_for(ms: float) -> int:
    return int(ms * 1e-3 * nominal_hz()) if ms > 0 else 0


def spin(cycles: int) -> None:
    if cycles > 0:
        torch.cuda._sleep(cycles)


@dataclass(frozen=True)
class Calibration:
    offset_ms: float  # event pair + launch around a hold: its duration less the spin itself


def calibrate(cycles: int, n: int = 5) -> Calibration | None:
    """Time holds of ``cycles`` and ``4 × cycles`` (``n`` each, interleaved): their difference is spin time
    alone, and what the short hold took beyond its spin is the offset."""
    if cycles <= 0:
        return None
    stream = torch.cuda.current_stream()
    pairs: list[tuple[int, torch.cuda.Event, torch.cuda.Event]] = []
    # a lead spin queues every pair before the GPU reaches it, as a sample's hold is queued behind the
    # flush: without it the GPU waits for each launch between the events, and that wait (not present in
    # the samples) inflated the offset and so the clock (2008 MHz read on a 1980 MHz H100)
    spin(cycles_for(_LEAD_MS))
    for _ in range(n):
        for c in (cycles, _LONG * cycles):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(stream)
            spin(c)
            b.record(stream)
            pairs.append((c, a, b))
    torch.cuda.synchronize()
    short = median(a.elapsed_time(b) for c, a, b in pairs if c == cycles)
    long = median(a.elapsed_time(b) for c, a, b in pairs if c != cycles)
    spin_ms = (long - short) / (_LONG - 1)
    if spin_ms <= 0:
        return None
    return Calibration(offset_ms=max(0.0, short - spin_ms))


def effective_mhz(cycles: int, hold_ms: float, cal: Calibration) -> float | None:
    """The clock during one hold of ``cycles`` that took ``hold_ms`` (events around it)."""
    spin_ms = hold_ms - cal.offset_ms
    return cycles / (spin_ms * 1e3) if cycles > 0 and spin_ms > 0 else None


def implausible(mhz: list[float]) -> str | None:
    """Why the readings cannot be the clock (their median above the device's maximum), or None."""
    if not mhz:
        return None
    top = nominal_hz() / 1e6
    mid = median(mhz)
    if above_max(mid, top):
        # keep "read N MHz": harness.analysis.compare reads the number back from runs stored before sm_mhz_suspect
        return f"read {mid:.0f} MHz, above the GPU's maximum {top:.0f} MHz: the probe's offset was off"
    return None
