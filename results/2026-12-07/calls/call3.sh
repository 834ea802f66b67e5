# L2 (right after L1, on the same warm machine): FA4 assembled, cuDNN's frontend installed; the backward
# (cudnn-frontend's published shape, correctness, determinism, exploits, part of the FA papers' grid); the
# kernel beside FA4 in both layouts; FA4 on the serving shapes
t0=$SECONDS
mkdir -p /opt/fa4site
cat /opt/fa4parts/cu13.part00 .device/fa4/a2/cu13.part01 | xz -dc -T0 | tar x -C /opt/fa4site || echo "fa4 part a failed (machine went cold?)"
rm -rf /opt/fa4b && python3 -m pip install -q --no-deps --no-index --target /opt/fa4b .device/fa4/fa4-b/*.whl 2>&1 | grep -vi warn
cp -r --update=none /opt/fa4b/* /opt/fa4site/
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/cudnn/*.whl 2>&1 | grep -vi warn
echo "staged in $((SECONDS - t0)) s"
source .device/calls/env.sh
DEADLINE=565
date -u; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "from flash_attn.cute import flash_attn_func; import cudnn; print('fa4 and cudnn frontend', cudnn.backend_version())"
B=sdpa-cudnn,cudnn-frontend,cudnn-frontend-det,sdpa-flash,sdpa-flash-det,flex,fa4,fa4-det
step 200 flashcore run --suite fa-paper-bwd --backends $B --filter "heads_kv=8,op=bwd" --db $DB --run-id bwd-cudnn-shape --log-dir $LOGS
step 70 flashcore run --suite correctness --filter "op!=fwd" --backends sdpa-cudnn,sdpa-flash,sdpa-efficient,sdpa-math,naive,flex,fa4,cudnn-frontend --db $DB --run-id correctness-bwd --log-dir $LOGS
step 45 flashcore run --suite determinism --filter "op=bwd" --db $DB --run-id determinism-bwd --log-dir $LOGS
step 30 env FLASHCORE_BACKENDS="$(python3 -m harness.testing exploits)" flashcore run --suite exploits --filter "op=bwd" --db $DB --run-id exploits-bwd --log-dir $LOGS
step 90 flashcore run --suite layouts --backends flashcore-bleeding-edge,sdpa-cudnn,fa4 --db $DB --run-id layouts --log-dir $LOGS
step 80 flashcore run --suite fa-paper --backends flashcore-bleeding-edge,sdpa-cudnn,fa4 --modes isolated --db $DB --run-id kernel-fa-paper --log-dir $LOGS
step 60 flashcore run --suite decode --backends fa4 --db $DB --run-id decode-fa4 --log-dir $LOGS
step 40 flashcore run --suite varlen --backends fa4 --db $DB --run-id varlen-fa4 --log-dir $LOGS
step 40 flashcore run --suite window --backends fa4 --db $DB --run-id window-fa4 --log-dir $LOGS
step 120 flashcore run --suite fa-paper-bwd --backends sdpa-cudnn,sdpa-flash,fa4,cudnn-frontend --filter "heads_kv!=8,head_dim=128,op=bwd" --db $DB --run-id bwd-fa-grid-d128 --log-dir $LOGS
(cd /tmp && tar czf $OUT/l2-fclogs.tgz fclogs); save; ls -la $OUT; echo "total $SECONDS s"
