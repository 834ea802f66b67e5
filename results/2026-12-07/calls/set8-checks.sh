# Sourced by n1.sh, p1.sh and q2.sh after env.sh and DEADLINE: the checks of kernels v9 and v10 and the decision.
# BINS: the carried folder with the xz-packed attn_check binaries and the probe; TAG: the prefix of the logs
# under $OUT. Leaves the tree at v9 + the dynamic defaults, the ops building in the background ($bp; not
# under NO_OPS_BUILD=1), and the decision in /opt/be-decision ("v9 v10 dyn", "v9 dyn" or "none").
K=/tmp/k1; mkdir -p $K; for b in probe ac8 ac8u ac9 ac10; do xz -dc $BINS/$b.xz > $K/$b && chmod +x $K/$b; done
echo "staged in $((SECONDS - t0)) s"; date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
git apply .device/l/v9.patch && git apply .device/l/dyn-defaults.diff && echo "tree: v9 + dyn defaults"
build() { python3 -c "from harness.tools.build.jit import load_ops; load_ops(verbose=False); print('kernels built')" 2>&1 | tail -3; echo "build $1 exit $? at $SECONDS s"; }
if [ -z "$NO_OPS_BUILD" ]; then ( build v9 ) > /tmp/build.log 2>&1 & bp=$!; else bp=""; fi
# san BIN TOOL ARGS...: one sanitizer run, its log kept whole, its summary and exit code in $K/BIN.TOOL.rc
san() { local b=$1 t=$2; shift 2; timeout -k 5 150 compute-sanitizer --tool $t --print-limit 3 --error-exitcode 9 $K/$b "$@" > $K/$b.$t.out 2>&1
  echo $? > $K/$b.$t.rc; }
cor() { local b=$1; timeout 150 $K/$b --correct --all-variants > $K/$b.correct 2>&1; timeout 60 $K/$b --correct --variants 3,9,11,12 --bhsd >> $K/$b.correct 2>&1; }
probe() { for f in 0 1 2 3 4 5 6; do echo "=== probe $f: $(timeout 20 $K/probe $f 2>&1 | tail -1)"
  for t in synccheck racecheck; do timeout -k 5 40 compute-sanitizer --tool $t --print-limit 2 --error-exitcode 9 $K/probe $f > $K/p.out 2>&1
    echo "probe $f $t exit $?: $(grep SUMMARY $K/p.out | tail -1)"; cat $K/p.out >> $OUT/$TAG-probe-full.log; done; done > $OUT/$TAG-probe.log; }
pids=""
for b in ac9 ac10; do cor $b & pids="$pids $!"; san $b synccheck --small --variants 3,11,12 & pids="$pids $!"
  san $b racecheck --small --variants 3,4,9,12 & pids="$pids $!"; san $b memcheck --small --variants 2,3,9,12 & pids="$pids $!"; done
san ac8u synccheck --small --variants 3,12 & pids="$pids $!"
probe & pids="$pids $!"
wait $pids; echo "checks done at $SECONDS s"
cat $OUT/$TAG-probe.log
ok() { local b=$1 r=1; [ "$(grep -c FAIL $K/$b.correct)" = 0 ] && [ "$(grep -c 'failures: 0' $K/$b.correct)" = 2 ] || r=0
  echo "$b correct: FAIL lines $(grep -c FAIL $K/$b.correct), 'failures: 0' lines $(grep -c 'failures: 0' $K/$b.correct)"
  for t in synccheck racecheck memcheck; do echo "$b $t exit $(cat $K/$b.$t.rc): $(grep SUMMARY $K/$b.$t.out | tail -1)"; [ "$(cat $K/$b.$t.rc)" = 0 ] || r=0; done
  return $((1 - r)); }
v9ok=1; ok ac9 || v9ok=0; v10ok=1; ok ac10 || v10ok=0
echo "ac8u synccheck exit $(cat $K/ac8u.synccheck.rc): $(grep SUMMARY $K/ac8u.synccheck.out | tail -1)"

{ for b in ac9 ac10 ac8u; do for t in synccheck racecheck memcheck; do [ -f $K/$b.$t.out ] && { echo "=== $b $t exit $(cat $K/$b.$t.rc)"; cat $K/$b.$t.out; }; done; done; } > $OUT/$TAG-sanitizers.log
cat $K/ac9.correct > $OUT/$TAG-ac9-correct.log; cat $K/ac10.correct > $OUT/$TAG-ac10-correct.log
for b in ac8 ac9 ac10; do step 60 $K/$b --time --variants 4,12 --iters 10 > $OUT/$TAG-time-$b.log 2>&1; done
python3 .device/l/cmp_time.py $OUT/$TAG-time-ac8.log $OUT/$TAG-time-ac9.log > $OUT/$TAG-cmp-v8-v9.log; tail -1 $OUT/$TAG-cmp-v8-v9.log
python3 .device/l/cmp_time.py $OUT/$TAG-time-ac9.log $OUT/$TAG-time-ac10.log > $OUT/$TAG-cmp-v9-v10.log; tail -1 $OUT/$TAG-cmp-v9-v10.log
grep -q "VERDICT KEEP" $OUT/$TAG-cmp-v8-v9.log || v9ok=0
grep -q "VERDICT KEEP" $OUT/$TAG-cmp-v9-v10.log || v10ok=0
if [ $v9ok = 1 ] && [ $v10ok = 1 ]; then echo "v9 v10 dyn" > /opt/be-decision
elif [ $v9ok = 1 ]; then echo "v9 dyn" > /opt/be-decision
else echo "none" > /opt/be-decision; fi
echo "DECISION: $(cat /opt/be-decision) (v9 $v9ok, v10 $v10ok)"
