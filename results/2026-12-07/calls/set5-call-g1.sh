# G1: FA4's first part staged (G2 assembles it), fa3 and pydantic installed. The kernel alone (attn_check): every
# variant's correctness (bshd; bhsd on the dynamic ones), racecheck/synccheck/memcheck on the changed variants; if the
# dynamic hand-off (3, 12) passes racecheck and correctness, the defaults switch to "dyn pp sec8" for causal S <= 8k
# (.device/calls/bleeding_edge.dyn-default.cu, the decision kept in /opt/be-defaults for G2/G3). Then the torch ops
# built, timing of the defaults' variants, the kernel's GPU tests, the correctness and determinism suites.
t0=$SECONDS
mkdir -p /opt/fa4parts /opt/peers && cp .device/g1/cu13.part00 /opt/fa4parts/
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/g1/*.whl 2>&1 | grep -vi warn
xz -dc .device/g1/attn_check.xz > /tmp/attn_check && chmod +x /tmp/attn_check; A=/tmp/attn_check
source .device/calls/env.sh
DEADLINE=${DEADLINE_G1:-520}
echo "staged in $((SECONDS - t0)) s"; date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
stat -c '%y %n' kernels/binding.cpp .device/calls/g1.sh
L=$OUT/g1-correct.log; S=$OUT/g1-sanitizers.log
step 50 $A --correct --all-variants > $L 2>&1; tail -2 $L; echo "FAIL lines: $(grep -c FAIL $L)"
step 25 $A --correct --variants 3,9,12 --bhsd >> $L 2>&1; tail -2 $L; echo "FAIL lines: $(grep -c FAIL $L)"
echo "+ racecheck 3,9,12"; timeout -k 5 70 compute-sanitizer --tool racecheck --error-exitcode 9 $A --small --variants 3,9,12 > $S 2>&1; rc=$?
echo "racecheck exit $rc"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY" $S | tail -3
if [ $rc -eq 0 ] && [ "$(grep -c FAIL $L)" = 0 ] && grep -q "RACECHECK SUMMARY: 0 hazards" $S; then
  cp .device/calls/bleeding_edge.dyn-default.cu kernels/bleeding_edge.cu; echo dyn > /opt/be-defaults
  echo "DEFAULTS: dyn pp sec8 for causal S <= 8k (racecheck clean, correctness clean)"
else echo old > /opt/be-defaults; echo "DEFAULTS: unchanged"; fi
md5sum kernels/bleeding_edge.cu | tee /opt/be.md5
touch -d '2026-12-01 00:00' $(find kernels -type f)
( python3 -c "from harness.tools.build import load_ops; load_ops(verbose=False); print('kernels built')" > /tmp/build.log 2>&1; echo "build exit $?" >> /tmp/build.log ) &
bp=$!
for t in synccheck memcheck; do
  echo "+ $t 2,3,6,9,12" >> $S; step 40 compute-sanitizer --tool $t --error-exitcode 9 $A --small --variants 2,3,6,9,12 >> $S 2>&1; grep -E "SUMMARY" $S | tail -1
done
wait $bp; cat /tmp/build.log | tail -5; echo "built by $SECONDS s"
step 90 $A --time --variants 0,2,4,6,7,9,12 --iters 10 > $OUT/g1-time.log 2>&1; grep -A200 "timing summary" $OUT/g1-time.log | grep -E "causal|summary"
P=$OUT/g1-pytest.log
step 90 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_kernels_gpu.py > $P 2>&1; tail -3 $P
step 60 flashcore run --suite correctness --backends flashcore-bleeding-edge --db $DB --run-id g-k-correctness --log-dir $LOGS
step 45 flashcore run --suite determinism --backends flashcore-bleeding-edge --db $DB --run-id g-k-determinism --log-dir $LOGS
save; ls -la $OUT; echo "total $SECONDS s"
