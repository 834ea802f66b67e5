# J1: FA4's first part and its wheels staged (J2 assembles them), pydantic, cuDNN's frontend and nvtx installed. Kernel v8 (key loop split into masked and
# unmasked parts) against v7 (main): v8's correctness (bshd all variants, bhsd on the persistent/dynamic ones),
# synccheck/racecheck/memcheck on the dynamic variants, timing of both on the variants the defaults use. The ops are
# built speculatively with v8 + the dyn defaults while the checks run; if v8 fails a check or is slower, it is backed
# out (and the dyn defaults kept only if v7's hand-off is clean). The decision is kept in /opt/be-decision for J2/J3.
t0=$SECONDS
mkdir -p /opt/fa4parts /opt/peers && cp .device/h1/cu13.part00 /opt/fa4parts/
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/h1/annotated_types*.whl .device/h1/pydantic*.whl .device/h1/typing_*.whl .device/h1/nvidia_cudnn*.whl .device/h1/nvtx*.whl 2>&1 | grep -vi warn
rm -rf /opt/fa4b && python3 -m pip install -q --no-deps --no-index --target /opt/fa4b .device/h1/*cutlass*.whl .device/h1/flash_attn_4*.whl .device/h1/quack*.whl .device/h1/torch_c_dlpack*.whl .device/h1/apache_tvm_ffi-0.1.15*.whl 2>&1 | grep -vi warn
for v in 7 8; do xz -dc .device/h1/ac$v.xz > /tmp/ac$v && chmod +x /tmp/ac$v; done
source .device/j/env.sh
DEADLINE=${DEADLINE_J1:-520}
echo "staged in $((SECONDS - t0)) s"; date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
git apply .device/j/v8-mainloop.patch && git apply .device/j/dyn-defaults.diff && echo "tree: v8 + dyn defaults"
( python3 -c "from harness.tools.build.jit import load_ops; load_ops(verbose=False); print('kernels built')" > /tmp/build.log 2>&1; echo "build exit $? at $SECONDS s" >> /tmp/build.log ) &
bp=$!
L=$OUT/j1-correct.log; S=$OUT/j1-sanitizers.log
step 50 /tmp/ac8 --correct --all-variants > $L 2>&1; tail -1 $L; echo "v8 FAIL lines: $(grep -c FAIL $L)"
step 25 /tmp/ac8 --correct --variants 2,3,9,12 --bhsd >> $L 2>&1; tail -1 $L; echo "v8 FAIL lines: $(grep -c FAIL $L)"
san() { local who=$1 tool=$2 vs=$3; echo "=== $who $tool $vs" >> $S
  timeout -k 5 70 compute-sanitizer --tool $tool --print-limit 5 --error-exitcode 9 /tmp/ac${who#v} --small --variants $vs >> $S 2>&1; local rc=$?
  echo "$who $tool $vs exit $rc: $(grep -E 'SUMMARY' $S | tail -1)"; return $rc; }
v8ok=1; [ "$(grep -c FAIL $L)" = 0 ] && [ "$(grep -c 'failures: 0' $L)" = 2 ] || v8ok=0
san v8 synccheck 3,12 || v8ok=0
san v8 racecheck 3,9,12 || v8ok=0
san v8 memcheck 2,3,9,12 || v8ok=0
echo "v8 checks: $v8ok at $SECONDS s"
wait $bp; tail -2 /tmp/build.log
step 90 /tmp/ac7 --time --variants 0,2,4,6,8,9,12 --iters 10 > $OUT/j1-time-v7.log 2>&1
step 90 /tmp/ac8 --time --variants 0,2,4,6,8,9,12 --iters 10 > $OUT/j1-time-v8.log 2>&1
python3 .device/j/cmp_time.py $OUT/j1-time-v7.log $OUT/j1-time-v8.log > $OUT/j1-cmp.log; tail -1 $OUT/j1-cmp.log
if [ $v8ok = 1 ] && grep -q "VERDICT KEEP" $OUT/j1-cmp.log; then echo "v8 dyn" > /opt/be-decision
else
  git apply -R .device/j/v8-mainloop.patch; git apply -R .device/j/dyn-defaults.diff
  v7ok=1; san v7 synccheck 3,12 || v7ok=0; san v7 racecheck 3,12 || v7ok=0
  step 20 /tmp/ac7 --correct --variants 3,12 --bhsd > $OUT/j1-v7-correct.log 2>&1; [ "$(grep -c FAIL $OUT/j1-v7-correct.log)" = 0 ] || v7ok=0
  if [ $v7ok = 1 ]; then git apply .device/j/dyn-defaults.diff; echo "dyn" > /opt/be-decision; else echo "none" > /opt/be-decision; fi
fi
echo "DECISION: $(cat /opt/be-decision)"
find kernels -type f | sort | xargs md5sum > /opt/be.md5
P=$OUT/j1-pytest.log
step 110 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_kernels_gpu.py > $P 2>&1; tail -3 $P
ls -la $OUT; echo "total $SECONDS s"
