"""Run one backend's prepared call on one fa-paper shape a few times (for ncu -k ... --launch-skip)."""
import sys

import torch

from harness.backends import registry
from harness.measure.inputs import make_inputs
from harness.spec.problem import Problem

backend, seqlen, head_dim, causal = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "causal"
p = Problem(batch=16384 // seqlen, heads_q=2048 // head_dim, seqlen_q=seqlen, head_dim=head_dim, dtype="bfloat16",
            causal=causal)
q, k, v = make_inputs(p, 1)
fn = registry.get(backend).prepare(p, q, k, v)
for _ in range(4):
    fn()
torch.cuda.synchronize()
print(backend, p, "done")
