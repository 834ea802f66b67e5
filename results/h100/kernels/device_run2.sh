#!/usr/bin/env bash
# Second H100 call: the first run's pytest died with SIGSEGV in test_rejects_wrong_rank (a rank-3 q).
# Rebuild, reproduce the error paths one per process (a crash cannot take the others down), get a C++
# backtrace of any crash with cuda-gdb, then run the whole GPU test file with crashes isolated (xdist).
set -u -o pipefail
OUT=${OUT:-/tmp/flashcore-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD FLASHCORE_CACHE=${FLASHCORE_CACHE:-/tmp/fc-cache} MAX_JOBS=16
date -u +%FT%TZ > "$OUT/env2.txt"
t=$SECONDS
load='from harness.build import load_ops, loaded_ops; load_ops(); print("ops", loaded_ops())'
timeout 150 python3 -c "$load" > "$OUT/build2.log" 2>&1 || { export FLASHCORE_KERNELS=phase4,phase4x;
  timeout 120 python3 -c "$load" >> "$OUT/build2.log" 2>&1 || { tail -30 "$OUT/build2.log"; exit 1; }; }
tail -1 "$OUT/build2.log"; echo "== build $((SECONDS - t)) s"

# Experiment: which argument kinds in a failing TORCH_CHECK crash? (ops fcexp::{str,int,dims}, CUDA)
mkdir -p /tmp/fcexp
cat > /tmp/fcexp/exp.cpp <<'CPP'
#include <ATen/ATen.h>
#include <torch/library.h>
at::Tensor s(const at::Tensor& q) { TORCH_CHECK(q.dim() == 4, "rank is not 4: ", "strings only"); return q; }
at::Tensor i(const at::Tensor& q) { TORCH_CHECK(q.dim() == 4, "rank is ", q.dim()); return q; }
at::Tensor d(const at::Tensor& q) { TORCH_CHECK(q.dim() == 4, "shape ", q.sizes()); return q; }
TORCH_LIBRARY(fcexp, m) { m.def("str(Tensor q) -> Tensor"); m.def("int(Tensor q) -> Tensor"); m.def("dims(Tensor q) -> Tensor"); }
TORCH_LIBRARY_IMPL(fcexp, CUDA, m) { m.impl("str", &s); m.impl("int", &i); m.impl("dims", &d); }
CPP
(timeout 120 python3 -c "from torch.utils.cpp_extension import load; load(name='fcexp', sources=['/tmp/fcexp/exp.cpp'], build_directory='/tmp/fcexp', is_python_module=False)" > "$OUT/exp_build.log" 2>&1; echo "exp build rc=$?" >> "$OUT/exp_build.log") &
exp_pid=$!

cat > /tmp/repro.py <<'PY'
import sys, torch
from harness.build import load_ops
load_ops()
f = torch.ops.flashcore.phase4
q = torch.randn(1, 16, 2, 64, device="cuda", dtype=torch.float16)
cases = {
    "rank3_view": lambda: f(q[0], q, q, 0.125, False, False),
    "rank3_fresh": lambda: f(torch.randn(16, 2, 64, device="cuda", dtype=torch.float16), q, q, 0.125, False, False),
    "noncontig_view": lambda: f(q.transpose(1, 2).contiguous().transpose(1, 2), q, q, 0.125, False, False),
    "shape_mismatch": lambda: f(q, q, q[:, :8].contiguous(), 0.125, False, False),
    "float32": lambda: f(q.float(), q, q, 0.125, False, False),
    "ok_view_input": lambda: f(q[:, :8], q, q, 0.125, False, False),
}
try:
    cases[sys.argv[1]]()
    print(sys.argv[1], "no error")
except RuntimeError as e:
    print(sys.argv[1], "RuntimeError:", str(e).splitlines()[0])
PY
for c in rank3_view rank3_fresh noncontig_view shape_mismatch float32 ok_view_input; do
  timeout 60 python3 /tmp/repro.py $c > "$OUT/repro_$c.log" 2>&1; echo "== repro $c rc=$?: $(grep -v '^$' "$OUT/repro_$c.log" | tail -1)"
done
crash=$(for c in rank3_view rank3_fresh noncontig_view shape_mismatch; do grep -q "Segmentation" "$OUT/repro_$c.log" && echo $c; done | head -1)
if [ -n "$crash" ]; then
  timeout 120 cuda-gdb -q -batch -ex "set pagination off" -ex run -ex bt --args python3 /tmp/repro.py "$crash" \
    > "$OUT/gdb.log" 2>&1
  echo "== cuda-gdb on $crash:"; grep -E "^#[0-9]+" "$OUT/gdb.log" | cut -c1-220 | head -30
fi

wait $exp_pid; tail -1 "$OUT/exp_build.log"
for c in str int dims; do
  timeout 60 python3 -c "import torch; torch.ops.load_library('/tmp/fcexp/fcexp.so'); q = torch.zeros(3, 4, device='cuda')
try: getattr(torch.ops.fcexp, '$c')(q)
except RuntimeError as e: print('raised:', str(e).splitlines()[0])" > "$OUT/exp_$c.log" 2>&1
  echo "== exp $c rc=$?: $(grep -v '^$' "$OUT/exp_$c.log" | tail -1)"
done

t=$SECONDS
timeout 150 python3 -m pytest -m gpu tests/test_kernels_gpu.py -q -n 4 -p no:cacheprovider > "$OUT/pytest2.log" 2>&1
echo "== pytest rc=$? $((SECONDS - t)) s"; grep -E "passed|failed|error" "$OUT/pytest2.log" | tail -3
grep -E "^(FAILED|ERROR)|crashed|node down" "$OUT/pytest2.log" | head -40
