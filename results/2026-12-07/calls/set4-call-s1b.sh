# S1b (right after S1a, same warm machine; fa3, pydantic, nvtx, nox staged by S1a): the regression gate on this
# card (nox -s bench; nox -s regress twice unchanged, once with the slowdown hook) and the duty-cycle experiment
# (the sustained loop with and without do_bench's flush between calls, and do_bench)
t0=$SECONDS
source .device/calls/env.sh
export PYTHONPATH=$PYTHONPATH:/opt/nox
DEADLINE=${DEADLINE_S1B:-560}
date -u; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "from harness.tools.build import load_ops; load_ops(verbose=False); print('kernels built')"
step 150 python3 -m nox -s bench > $OUT/s1-bench.log 2>&1; tail -25 $OUT/s1-bench.log
step 110 python3 -m nox -s regress > $OUT/s1-regress-1.log 2>&1; tail -22 $OUT/s1-regress-1.log
step 110 python3 -m nox -s regress > $OUT/s1-regress-2.log 2>&1; tail -22 $OUT/s1-regress-2.log
FLASHCORE_SLOWDOWN=flashcore-bleeding-edge=1.10 step 110 python3 -m nox -s regress > $OUT/s1-regress-slow.log 2>&1; tail -22 $OUT/s1-regress-slow.log
cp -r results/benchmarks $OUT/benchmarks 2>/dev/null
step 150 flashcore diagnose duty-cycle --suite fa-paper --cell sdpa-cudnn:b2-hq16-hkv16-sq8192-sk8192-d128-bfloat16-full-bshd --cell flashcore-bleeding-edge:b2-hq16-hkv16-sq8192-sk8192-d128-bfloat16-full-bshd --cell fa3:b2-hq16-hkv16-sq8192-sk8192-d128-bfloat16-causal-bshd --cell flashcore-bleeding-edge:b8-hq16-hkv16-sq2048-sk2048-d128-bfloat16-causal-bshd --rounds 2 --json $OUT/duty-cycle.json > $OUT/s1-duty.log 2>&1; tail -30 $OUT/s1-duty.log
step 90 bash .device/calls/ncu_pair.sh 2048 128 causal
save; ls -la $OUT; echo "total $SECONDS s"
