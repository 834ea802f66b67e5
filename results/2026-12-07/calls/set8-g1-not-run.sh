# G1 (H200 only): the regression gate's baseline set on this card (nox -s bench: three runs, each its own
# process), one unchanged rerun through nox -s regress, and one with the kernel slowed by 10 % (the test hook).
# The kernel is main's (v8, v6's defaults). fa4 is not staged (skipped with its reason).
t0=$SECONDS
mkdir -p /opt/peers /opt/nox
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/g/pydantic*.whl .device/g/annotated*.whl .device/g/typing_*.whl 2>&1 | grep -vi warn
python3 -m pip install -q --no-deps --no-index --target /opt/nox .device/g/nox*.whl .device/g/argcomplete*.whl .device/g/colorlog*.whl .device/g/dependency_groups*.whl .device/g/python_discovery*.whl .device/g/virtualenv*.whl .device/g/distlib*.whl .device/g/platformdirs*.whl 2>&1 | grep -vi warn
source .device/l/env.sh
export PYTHONPATH=$PYTHONPATH:/opt/nox
DEADLINE=${DEADLINE_G1:-570}
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "from harness.tools.build.jit import load_ops; load_ops(verbose=False); print('kernels built')"
step 200 python3 -m nox -s bench > $OUT/g1-bench.log 2>&1; tail -25 $OUT/g1-bench.log
cp -r results/benchmarks $OUT/benchmarks-after-bench 2>/dev/null
step 110 python3 -m nox -s regress > $OUT/g1-regress-1.log 2>&1; tail -24 $OUT/g1-regress-1.log
cp -r results/benchmarks $OUT/benchmarks-after-regress 2>/dev/null
FLASHCORE_SLOWDOWN=flashcore-bleeding-edge=1.10 step 110 python3 -m nox -s regress > $OUT/g1-regress-slow.log 2>&1; tail -24 $OUT/g1-regress-slow.log
cp -r results/benchmarks $OUT/benchmarks 2>/dev/null
ls -la $OUT; echo "total $SECONDS s"
