# N2 (right after N1, same warm machine): FA4 assembled with the wheels N1 staged, fa3 and nvtx installed; the
# kernel N1 chose (keep_build.sh); the kernels' GPU tests (the torch op of v9 allocates the mailboxes);
# fa-paper (bf16) with the kernel beside sdpa-cudnn, fa4 and fa3, both timing modes, correctness and determinism
# included; the standing against the best of the three, isolated and sustained
t0=$SECONDS
mkdir -p /opt/fa4site /opt/peers
cat /opt/fa4parts/cu13.part00 .device/l2/cu13.part01 | xz -dc -T0 | tar x -C /opt/fa4site || echo "fa4 part a failed (machine went cold?)"
cp -r --update=none /opt/fa4b/* /opt/fa4site/
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/l2/fa3_fwd*.whl .device/l2/nvtx*.whl 2>&1 | grep -vi warn
echo "staged in $((SECONDS - t0)) s"
source .device/l/keep_build.sh
source .device/l/env.sh
DEADLINE=${DEADLINE_N2:-480}
date -u; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "from flash_attn.cute import flash_attn_func; import flash_attn_interface, nvtx; print('fa4, fa3 and nvtx import')"
x python3 -c "from harness.tools.build.jit import load_ops; load_ops(verbose=False); print('kernels built')"
P=$OUT/n2-pytest.log
step 110 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_kernels_gpu.py > $P 2>&1; tail -3 $P
step 300 flashcore run --suite fa-paper --backends sdpa-cudnn,fa4,fa3,flashcore-bleeding-edge --db $DB --run-id set7-fa-paper --log-dir $LOGS > $OUT/n2-fa-paper.log 2>&1
tail -4 $OUT/n2-fa-paper.log
flashcore standing --db $DB --run set7-fa-paper --backend flashcore-bleeding-edge --peers sdpa-cudnn,fa4,fa3 2>&1 | tail -40
flashcore standing --db $DB --run set7-fa-paper --backend flashcore-bleeding-edge --peers sdpa-cudnn,fa4,fa3 --mode sustained 2>&1 | tail -12
save; ls -la $OUT; echo "total $SECONDS s"
