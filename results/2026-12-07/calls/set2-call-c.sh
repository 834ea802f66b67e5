# C (right after B, on the same warm machine): FA4 assembled from B's part and this one, cuDNN's frontend;
# FA4 and cuDNN on the FA papers' backward grid, their backward correctness; FP8; FA4 on the serving shapes
t0=$SECONDS
mkdir -p /opt/fa4site /opt/peers
cat /opt/fa4parts/cu13.part00 .device/cc/cu13.part01 | xz -dc -T0 | tar x -C /opt/fa4site || echo "fa4 part a failed (machine went cold?)"
rm -rf /opt/fa4b && python3 -m pip install -q --no-deps --no-index --target /opt/fa4b .device/cc/*cutlass*.whl .device/cc/flash_attn_4*.whl .device/cc/quack*.whl .device/cc/torch_c_dlpack*.whl .device/cc/apache_tvm_ffi-0.1.15*.whl 2>&1 | grep -vi warn
cp -r --update=none /opt/fa4b/* /opt/fa4site/
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/cc/nvidia_cudnn*.whl .device/cc/pydantic*.whl .device/cc/annotated*.whl .device/cc/typing*.whl 2>&1 | grep -vi warn
echo "staged in $((SECONDS - t0)) s"
source .device/calls/env.sh
DEADLINE=${DEADLINE_C:-450}
date -u; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "from flash_attn.cute import flash_attn_func; import cudnn; print('fa4 and cudnn frontend', cudnn.backend_version())"
step 220 flashcore run --suite fa-paper-bwd --backends sdpa-cudnn,fa4,sdpa-flash,flex --filter "heads_kv!=8,op=bwd" --db $DB --run-id bwd-fa-grid --log-dir $LOGS
step 60 flashcore run --suite correctness --filter "op=bwd" --backends fa4,fa4-det,cudnn-frontend,cudnn-frontend-det --db $DB --run-id correctness-bwd-fa4 --log-dir $LOGS
step 45 flashcore run --suite fp8 --backends cudnn-frontend-fp8,fa3,naive --db $DB --run-id fp8 --log-dir $LOGS
step 40 flashcore run --suite varlen --backends fa4 --db $DB --run-id varlen-fa4 --log-dir $LOGS
step 40 flashcore run --suite window --backends fa4 --db $DB --run-id window-fa4 --log-dir $LOGS
(cd /tmp && tar czf $OUT/c-fclogs.tgz fclogs); save; ls -la $OUT; echo "total $SECONDS s"
