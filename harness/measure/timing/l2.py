"""L2 flush between samples, so every sample starts with cold caches (the inputs of the previous call are
evicted), as a kernel meets them in a model. Two ways, over a buffer of at least twice the L2 size:

* ``read`` (the default: sum the buffer, which is never written after it is made): leaves L2 full of
  clean lines, the previous call's dirty outputs written back during the flush, outside the timed
  region. The timed kernel meets the cache Nsight Compute's ``--cache-control all`` leaves (flushed and
  invalidated before each replay), so the two instruments time the same work.
* ``write`` (zero the buffer): what Triton's ``do_bench`` and nvbench do. It leaves L2 full of *dirty*
  lines, which the timed kernel then pays to write back as it evicts them.
"""
from __future__ import annotations

import torch

FLUSH_MODES = ("read", "write")


class L2Flusher:
    def __init__(self, device: torch.device | str = "cuda", factor: int = 2) -> None:
        props = torch.cuda.get_device_properties(device)
        l2 = int(getattr(props, "L2_cache_size", 0)) or (50 << 20)
        self.bytes = max(factor * l2, 64 << 20)
        self.buf = torch.zeros(self.bytes // 4, dtype=torch.int32, device=device)
        self._sink = torch.zeros((), dtype=torch.int64, device=device)

    def __call__(self, mode: str = "read") -> None:
        if mode == "write":
            self.buf.zero_()
        elif mode == "read":
            torch.sum(self.buf, dim=0, dtype=torch.int64, out=self._sink)
        else:
            raise ValueError(f"L2 flush mode {mode!r}: allowed {', '.join(FLUSH_MODES)}")
