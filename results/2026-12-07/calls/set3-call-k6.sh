# K6 (same warm machine, after K5): the cross-check of flashcore's two modes against do_bench and Nsight Compute
# on the fa-paper cells of S >= 8k (cut by the call's limit after 31 of 32 cells)
source .device/calls/env.sh; DEADLINE=390
step 370 flashcore crosscheck --suite fa-paper --filter "seqlen_q>=8192" --backends sdpa-cudnn,fa4,fa3,flashcore-bleeding-edge --db $DB --run-id k-crosscheck --cell-timeout 40 2>&1 | tail -60; save
