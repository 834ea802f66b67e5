# P1 (one call alone, when device time allows only one): kernel v9 (the dynamic hand-off through a 16-byte bulk copy
# into a shared slot, on the slot's mbarriers) and v10 (v9 + each K load one block ahead of the V before it, a
# tile's first K before its Q), attn_check binaries built off the GPU (nvcc 13.0, sm_90a): correctness (bshd every
# variant, bhsd on the dynamic ones) and the sanitizers, run side by side (none of it is timed); the hand-off
# probe's seven forms under synccheck and racecheck; then timing, alone on the GPU: v8 (main), v9, v10 on variants
# 4 (one tile, turns) and 12 (dyn pp sec8). Meanwhile the torch ops are built for v9 + the dynamic defaults. If v9
# is correct, clean under synccheck, racecheck and memcheck and not slower than v8: the kernels' GPU tests and
# fa-paper (isolated) with v9 + the dynamic defaults beside sdpa-cudnn and fa3 (no fa4: staging it takes two
# calls), and the standing against those two.
t0=$SECONDS
mkdir -p /opt/peers
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/p1/*.whl 2>&1 | grep -vi warn
K=/tmp/k1; mkdir -p $K; for b in probe ac8 ac8u ac9 ac10; do xz -dc .device/p1/$b.xz > $K/$b && chmod +x $K/$b; done
source .device/l/env.sh
DEADLINE=${DEADLINE_P1:-470}
echo "staged in $((SECONDS - t0)) s"; date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
git apply .device/l/v9.patch && git apply .device/l/dyn-defaults.diff && echo "tree: v9 + dyn defaults"
build() { python3 -c "from harness.tools.build.jit import load_ops; load_ops(verbose=False); print('kernels built')" 2>&1 | tail -3; echo "build $1 exit $? at $SECONDS s"; }
( build v9 ) > /tmp/build.log 2>&1 &
bp=$!
# san BIN TOOL ARGS...: one sanitizer run, its log kept whole, its summary and exit code in $K/BIN.TOOL.rc
san() { local b=$1 t=$2; shift 2; timeout -k 5 150 compute-sanitizer --tool $t --print-limit 3 --error-exitcode 9 $K/$b "$@" > $K/$b.$t.out 2>&1
  echo $? > $K/$b.$t.rc; }
cor() { local b=$1; timeout 150 $K/$b --correct --all-variants > $K/$b.correct 2>&1; timeout 60 $K/$b --correct --variants 3,9,11,12 --bhsd >> $K/$b.correct 2>&1; }
probe() { for f in 0 1 2 3 4 5 6; do echo "=== probe $f: $(timeout 20 $K/probe $f 2>&1 | tail -1)"
  for t in synccheck racecheck; do timeout -k 5 40 compute-sanitizer --tool $t --print-limit 2 --error-exitcode 9 $K/probe $f > $K/p.out 2>&1
    echo "probe $f $t exit $?: $(grep SUMMARY $K/p.out | tail -1)"; cat $K/p.out >> $OUT/p1-probe-full.log; done; done > $OUT/p1-probe.log; }
pids=""
for b in ac9 ac10; do cor $b & pids="$pids $!"; san $b synccheck --small --variants 3,11,12 & pids="$pids $!"
  san $b racecheck --small --variants 3,4,9,12 & pids="$pids $!"; san $b memcheck --small --variants 2,3,9,12 & pids="$pids $!"; done
san ac8u synccheck --small --variants 3,12 & pids="$pids $!"
probe & pids="$pids $!"
wait $pids; echo "checks done at $SECONDS s"
cat $OUT/p1-probe.log
ok() { local b=$1 r=1; [ "$(grep -c FAIL $K/$b.correct)" = 0 ] && [ "$(grep -c 'failures: 0' $K/$b.correct)" = 2 ] || r=0
  echo "$b correct: FAIL lines $(grep -c FAIL $K/$b.correct), 'failures: 0' lines $(grep -c 'failures: 0' $K/$b.correct)"
  for t in synccheck racecheck memcheck; do echo "$b $t exit $(cat $K/$b.$t.rc): $(grep SUMMARY $K/$b.$t.out | tail -1)"; [ "$(cat $K/$b.$t.rc)" = 0 ] || r=0; done
  return $((1 - r)); }
v9ok=1; ok ac9 || v9ok=0; v10ok=1; ok ac10 || v10ok=0
echo "ac8u synccheck exit $(cat $K/ac8u.synccheck.rc): $(grep SUMMARY $K/ac8u.synccheck.out | tail -1)"

{ for b in ac9 ac10 ac8u; do for t in synccheck racecheck memcheck; do [ -f $K/$b.$t.out ] && { echo "=== $b $t exit $(cat $K/$b.$t.rc)"; cat $K/$b.$t.out; }; done; done; } > $OUT/p1-sanitizers.log
cat $K/ac9.correct > $OUT/p1-ac9-correct.log; cat $K/ac10.correct > $OUT/p1-ac10-correct.log
for b in ac8 ac9 ac10; do step 60 $K/$b --time --variants 4,12 --iters 10 > $OUT/p1-time-$b.log 2>&1; done
python3 .device/l/cmp_time.py $OUT/p1-time-ac8.log $OUT/p1-time-ac9.log > $OUT/p1-cmp-v8-v9.log; tail -1 $OUT/p1-cmp-v8-v9.log
python3 .device/l/cmp_time.py $OUT/p1-time-ac9.log $OUT/p1-time-ac10.log > $OUT/p1-cmp-v9-v10.log; tail -1 $OUT/p1-cmp-v9-v10.log
grep -q "VERDICT KEEP" $OUT/p1-cmp-v8-v9.log || v9ok=0
grep -q "VERDICT KEEP" $OUT/p1-cmp-v9-v10.log || v10ok=0
if [ $v9ok = 1 ] && [ $v10ok = 1 ]; then echo "v9 v10 dyn" > /opt/be-decision
elif [ $v9ok = 1 ]; then echo "v9 dyn" > /opt/be-decision
else echo "none" > /opt/be-decision; fi
echo "DECISION: $(cat /opt/be-decision) (v9 $v9ok, v10 $v10ok)"
wait $bp; cat /tmp/build.log
case "$(cat /opt/be-decision)" in *v9*)
  x python3 -c "from harness.tools.build.jit import load_ops; load_ops(verbose=False); print('kernels built (v9 + dyn defaults)')"
  P=$OUT/p1-pytest.log
  step 100 python3 -m pytest -q -x -p no:cacheprovider -m gpu tests/test_kernels_gpu.py > $P 2>&1; tail -3 $P
  step 200 flashcore run --suite fa-paper --modes isolated --backends sdpa-cudnn,fa3,flashcore-bleeding-edge --db $DB --run-id set7-p1-fa-paper --log-dir $LOGS > $OUT/p1-fa-paper.log 2>&1
  tail -3 $OUT/p1-fa-paper.log
  flashcore standing --db $DB --run set7-p1-fa-paper --backend flashcore-bleeding-edge --peers sdpa-cudnn,fa3 2>&1 | tail -34
  save ;;
*) echo "v9 not kept: the harness part is skipped (main's kernel was measured in the sixth set)" ;; esac
ls -la $OUT; echo "total $SECONDS s"
