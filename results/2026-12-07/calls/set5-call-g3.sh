# G3 (right after G2, same warm machine, everything staged): fa-paper in float16 with every peer that has it;
# the regression gate on this card (nox -s bench records three runs; nox -s regress twice unchanged, once with the
# kernel slowed x1.10 by the test hook); the duty-cycle diagnostic (rotated inputs or one set, flushed or not); a cross-check of both modes against do_bench and ncu on d128 S=2k/8k cells
t0=$SECONDS
source .device/calls/keep_build.sh
source .device/calls/env.sh
export PYTHONPATH=$PYTHONPATH:/opt/nox
DEADLINE=${DEADLINE_G3:-560}
date -u; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "from harness.tools.build import load_ops; load_ops(verbose=False); print('kernels built')"
step 150 flashcore run --suite fa-paper-fp16 --db $DB --run-id g-fa-paper-fp16 --log-dir $LOGS
N=$OUT/g3-nox.log
step 150 python3 -m nox -s bench > $N 2>&1; tail -4 $N
for i in 1 2; do echo "=== regress $i" >> $N; step 50 python3 -m nox -s regress >> $N 2>&1; grep -E "^regress:" $N | tail -1; done
echo "=== regress slowdown" >> $N; FLASHCORE_SLOWDOWN=flashcore-bleeding-edge=1.10 step 50 python3 -m nox -s regress >> $N 2>&1; grep -E "^regress:" $N | tail -1
tar czf $OUT/g3-benchmarks.tgz results/benchmarks 2>/dev/null
step 110 flashcore diagnose duty-cycle --suite fa-paper --cell sdpa-cudnn:b2-hq16-hkv16-sq8192-sk8192-d128-bfloat16-full-bshd --cell flashcore-bleeding-edge:b2-hq16-hkv16-sq8192-sk8192-d128-bfloat16-full-bshd --cell fa4:b2-hq16-hkv16-sq8192-sk8192-d128-bfloat16-causal-bshd --cell flashcore-bleeding-edge:b8-hq16-hkv16-sq2048-sk2048-d128-bfloat16-causal-bshd --rounds 3 --window-s 0.4 --json $OUT/g3-duty-cycle.json > $OUT/g3-duty.log 2>&1; cat $OUT/g3-duty.log
step 150 flashcore crosscheck --suite fa-paper --filter "head_dim=128,seqlen_q>=4096,seqlen_q<=8192" --backends sdpa-cudnn,fa4,flashcore-bleeding-edge --run-id g-crosscheck --db $DB --cell-timeout 40 > $OUT/g3-crosscheck.log 2>&1; tail -30 $OUT/g3-crosscheck.log
save; ls -la $OUT; echo "total $SECONDS s"
