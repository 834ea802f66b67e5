#!/usr/bin/env bash
# The H100 evidence of the harness core and the project kernels, in stages that each fit one device
# call. Every command is echoed before it runs; databases and logs go to results/h100/ and $OUT.
#   scripts/h100_evidence.sh STAGE
# STAGE: gpu-tests | suites | suites-resume | fa-paper-1 | fa-paper-2 | fa-paper-twice | fa-paper-one | ncu
#        | ncu-short | ncu-agreement
# fa-paper-twice and ncu-agreement name their runs with $TAG (run ids must be new in the database).
set -uo pipefail
stage=${1:?stage}
out=${OUT:-/tmp/out}
mkdir -p "$out" results/h100
. scripts/device_setup.sh
db=${DB:-results/h100/flashcore.db}  # DB=... to write elsewhere
x() { echo "+ $*"; "$@"; echo "exit code $?"; }
fa_paper() { /usr/bin/time -f "fa-paper wall %e s" flashcore run --suite fa-paper --db "$db" --run-id "$1" --log-dir /tmp/fclogs; }
case "$stage" in
  gpu-tests)
    x python3 -c "from harness.build import load_ops; load_ops(verbose=True)"
    x python3 -m pytest -q -m gpu tests/test_harness_gpu.py
    ;;
  suites)
    x flashcore env
    x flashcore run --suite correctness --db "$db" --run-id h100-correctness --log-dir /tmp/fclogs
    x flashcore run --suite determinism --db "$db" --run-id h100-determinism --log-dir /tmp/fclogs
    x flashcore run --suite seed-claims --db "$db" --run-id h100-seed-claims --log-dir /tmp/fclogs
    ;;
  suites-resume)  # continue an interrupted correctness run, then the other two suites
    x flashcore run --suite correctness --db "$db" --run-id h100-correctness --resume --log-dir /tmp/fclogs
    x flashcore run --suite determinism --db "$db" --run-id h100-determinism --log-dir /tmp/fclogs
    x flashcore run --suite seed-claims --db "$db" --run-id h100-seed-claims --log-dir /tmp/fclogs
    ;;
  fa-paper-1)
    fa_paper h100-fa-paper-1
    ;;
  fa-paper-2)
    fa_paper h100-fa-paper-2
    x flashcore compare h100-fa-paper-1 h100-fa-paper-2 --db "$db"
    ;;
  fa-paper-twice)  # two fresh runs back to back (the 1% agreement target); SEED_CLAIMS=1 adds seed-claims
    tag=${TAG:?TAG names the runs: h100-fa-paper-TAG-a and -b}
    x python3 -c "from harness.build import load_ops; load_ops()"
    x flashcore env
    for r in a b; do
      fa_paper "h100-fa-paper-$tag-$r"
    done
    x flashcore compare "h100-fa-paper-$tag-a" "h100-fa-paper-$tag-b" --db "$db"
    if [ "${SEED_CLAIMS:-0}" = 1 ]; then
      x flashcore run --suite seed-claims --db "$db" --run-id "h100-seed-claims-$tag" --log-dir /tmp/fclogs
    fi
    ;;
  fa-paper-one)  # one run of the pair, RUN=a or b (the pair split over two device calls); b compares
    tag=${TAG:?TAG names the runs}; r=${RUN:?RUN is a or b}
    fa_paper "h100-fa-paper-$tag-$r"
    if [ "$r" = b ]; then
      x flashcore compare "h100-fa-paper-$tag-a" "h100-fa-paper-$tag-b" --db "$db"
    fi
    ;;
  ncu-short)  # kernels of 20-100 us (the event tare matters most there), harness medians from the DB
    x flashcore profile --suite fa-paper --filter "seqlen_q<=1024,head_dim=128" \
      --backends flashcore-bleeding-edge,flashcore-phase4x,sdpa-flash,sdpa-cudnn,fa4 \
      --db "$db" --timing latest --out-dir results/h100/profile --cell-timeout 60
    cp -r results/h100/profile "$out/" 2>/dev/null
    ;;
  ncu-agreement)  # harness vs ncu from ~10 us to ~1 ms, with each L2 flush (~9 minutes; PROFILE_S caps ncu)
    tag=${TAG:?TAG names the runs}
    for f in write read; do  # the kernel clock (CUPTI) of 10 calls per cell beside the events
      x flashcore run --suite ncu-agreement --db "$db" --run-id "h100-ncu-agreement-$f-$tag" --l2-flush $f \
        --kernel-clock 10 --log-dir /tmp/fclogs
    done
    x timeout "${PROFILE_S:-400}" flashcore profile --suite ncu-agreement --metric-set time --db "$db" \
      --run-id "h100-ncu-time-$tag" --timing "h100-ncu-agreement-read-$tag" --out-dir results/h100/profile \
      --cell-timeout 60
    for f in read write; do  # from the saved ncu outputs: also right when the profile was cut short
      x python3 scripts/ncu_saved_vs_harness.py "results/h100/profile/h100-ncu-time-$tag" --db "$db" \
        --timing "h100-ncu-agreement-$f-$tag"
    done
    tar czf "$out/profile-ncu-time-$tag.tgz" -C results/h100/profile "h100-ncu-time-$tag"
    ;;
  ncu)  # harness median (from the runs above) against Nsight Compute's gpu__time_duration, clocks not locked
    x flashcore profile --suite fa-paper --filter "seqlen_q=2048,head_dim=128" \
      --backends sdpa-flash,sdpa-cudnn,fa4,flashcore-bleeding-edge,flashcore-phase4x \
      --db "$db" --timing latest --out-dir results/h100/profile --cell-timeout 90
    x flashcore profile --suite seed-claims --filter "batch=2,causal=false" \
      --backends sdpa-flash,sdpa-cudnn,flashcore-bleeding-edge \
      --db "$db" --timing latest --out-dir results/h100/profile --cell-timeout 90
    cp -r results/h100/profile "$out/" 2>/dev/null
    ;;
esac
python3 scripts/db_copy.py "$db" "$out/"; tar czf "$out/logs-$stage.tgz" -C /tmp fclogs 2>/dev/null
