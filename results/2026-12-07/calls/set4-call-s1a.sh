# S1a (no FA4 this session): fa3, pydantic, nvtx and nox installed. The kernel's variants not run before (3 dyn with
# st.async, 9, 10, 11, 12): correctness, sanitizers, timing beside the defaults. S1b follows on the same machine.
t0=$SECONDS
mkdir -p /opt/peers /opt/nox
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/s1/fa3*.whl .device/s1/pydantic*.whl .device/s1/annotated*.whl .device/s1/typing_insp*.whl .device/s1/nvtx*.whl 2>&1 | grep -vi warn
python3 -m pip install -q --no-deps --no-index --target /opt/nox .device/s1/nox*.whl .device/s1/argcomplete*.whl .device/s1/colorlog*.whl .device/s1/dependency_groups*.whl .device/s1/python_discovery*.whl .device/s1/virtualenv*.whl .device/s1/distlib*.whl .device/s1/platformdirs*.whl 2>&1 | grep -vi warn
source .device/calls/env.sh
export PYTHONPATH=$PYTHONPATH:/opt/nox
DEADLINE=${DEADLINE_S1:-300}
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
step 60 build/attn_check --correct --all-variants > $OUT/s1-correct.log 2>&1; tail -2 $OUT/s1-correct.log; grep -c FAIL $OUT/s1-correct.log
step 40 build/attn_check --correct --variants 3,9,10,11,12 --bhsd > $OUT/s1-correct-bhsd.log 2>&1; tail -2 $OUT/s1-correct-bhsd.log
for t in racecheck synccheck memcheck; do
  step 70 compute-sanitizer --tool $t --error-exitcode 9 build/attn_check --small --variants 3,9,10,11,12 > $OUT/s1-$t.log 2>&1; tail -3 $OUT/s1-$t.log
done
step 100 build/attn_check --time --variants 0,3,4,6,7,9,10,11,12 --iters 10 > $OUT/s1-time.log 2>&1; grep -A250 "timing summary" $OUT/s1-time.log
save; ls -la $OUT; echo "total $SECONDS s"
