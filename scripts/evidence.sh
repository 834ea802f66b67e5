#!/usr/bin/env bash
# GPU evidence in stages that each fit one device call, on an offline GPU machine with the optional
# backends staged in /opt (FA4: shared/device/stage-fa4.sh; the peers: `flashcore wheelhouse`). Every
# command is echoed with its exit code; databases go to $DB (default results/h200/flashcore.db), logs and a
# consistent copy of the database to $OUT.
#   scripts/evidence.sh STAGE
# STAGE: setup | gpu-tests | peers | fa-paper | crosscheck | rounds
set -uo pipefail
stage=${1:?stage}
out=${OUT:-/tmp/out}
gpu=${GPU_DIR:-results/h200}
db=${DB:-$gpu/flashcore.db}
tag=${TAG:-h200}
mkdir -p "$out" "$gpu"
. scripts/device_setup.sh
for d in /opt/peers; do [ -d "$d" ] && export PYTHONPATH=$d${PYTHONPATH:+:$PYTHONPATH}; done
export FLASHINFER_WORKSPACE_BASE=/opt/flashinfer-ws FLASHINFER_CUDA_ARCH_LIST=9.0a MAX_JOBS=$(nproc)
x() { echo "+ $*"; "$@"; echo "exit code $?"; }
timed() { local t0=$SECONDS; x "$@"; echo "wall $((SECONDS - t0)) s: $*"; }
case "$stage" in
  setup)
    x nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
    x python3 -c "from harness.build import load_ops; load_ops(verbose=True)"
    x flashcore env
    ;;
  gpu-tests)
    timed python3 -m pytest -q -m gpu tests/test_harness_gpu.py tests/test_timing_modes.py tests/test_kernels_gpu.py
    ;;
  peers)  # the new peer backends: correctness and determinism rows, every distribution
    b=fa3,flashinfer-fa3,flashinfer-fa2,cudnn-frontend
    timed flashcore run --suite correctness --backends $b --db "$db" --run-id "$tag-correctness-peers" --log-dir /tmp/fclogs
    timed flashcore run --suite determinism --backends $b --db "$db" --run-id "$tag-determinism-peers" --log-dir /tmp/fclogs
    ;;
  fa-paper)  # every available backend, both timing modes, correctness included
    timed flashcore run --suite fa-paper --db "$db" --run-id "$tag-fa-paper" --log-dir /tmp/fclogs
    x flashcore audit suites/claims/seeds.toml --db "$db" --out "$out/audit"
    ;;
  crosscheck)  # flashcore's two modes against do_bench and ncu (FILTER narrows the cells)
    timed flashcore crosscheck --suite fa-paper --filter "${FILTER:-seqlen_q>=1024}" \
      --backends "${BACKENDS:-sdpa-cudnn,fa4,fa3,flashcore-bleeding-edge}" --db "$db" --run-id "$tag-crosscheck"
    ;;
  rounds)  # two back-to-back runs with interleaved rounds: the ratio agreement
    for r in a b; do
      timed flashcore run --suite fa-paper --rounds "${ROUNDS:-3}" --modes "${MODES:-isolated}" \
        --backends "${BACKENDS:-sdpa-cudnn,fa4,fa3,flashcore-bleeding-edge}" --filter "${FILTER:-seqlen_q>=2048}" \
        --db "$db" --run-id "$tag-rounds-$r" --log-dir /tmp/fclogs
    done
    x flashcore compare "$tag-rounds-a" "$tag-rounds-b" --db "$db"
    ;;
esac
python3 scripts/db_copy.py "$db" "$out/"; tar czf "$out/logs-$stage.tgz" -C /tmp fclogs 2>/dev/null
true
