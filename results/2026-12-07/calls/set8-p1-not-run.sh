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
source .device/l/env.sh
DEADLINE=${DEADLINE_P1:-470}
BINS=.device/p1 TAG=p1; source .device/l/checks.sh
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
source .device/l/v11.sh
ls -la $OUT; echo "total $SECONDS s"
