# J2 (right after J1, same warm machine): FA4 assembled with the wheels J1 staged, fa3 installed;
# fa-paper (bf16) with every installed backend, both timing modes, correctness and determinism included (timed)
t0=$SECONDS
mkdir -p /opt/fa4site /opt/peers
cat /opt/fa4parts/cu13.part00 .device/h2/cu13.part01 | xz -dc -T0 | tar x -C /opt/fa4site || echo "fa4 part a failed (machine went cold?)"
cp -r --update=none /opt/fa4b/* /opt/fa4site/
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/h2/fa3_fwd*.whl 2>&1 | grep -vi warn
echo "staged in $((SECONDS - t0)) s"
source .device/j/keep_build2.sh
source .device/j/env.sh
DEADLINE=${DEADLINE_J2:-560}
date -u; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "from flash_attn.cute import flash_attn_func; import flash_attn_interface, cudnn; print('fa4, fa3 and cudnn frontend', cudnn.backend_version())"
x python3 -c "from harness.tools.build.jit import load_ops; load_ops(verbose=False); print('kernels built')"
step 520 flashcore run --suite fa-paper --db $DB --run-id j-fa-paper --log-dir $LOGS
flashcore standing --db $DB --run j-fa-paper --backend flashcore-bleeding-edge --peers sdpa-cudnn,fa4,fa3 2>&1 | tail -40
save; ls -la $OUT; echo "total $SECONDS s"
