# K1 (not run yet; kernel only, about 3 min): which hand-off forms compute-sanitizer accepts, and the kernel with
# the unaligned barrier. Binaries built here and carried as xz (.device/k1): probe = kernels/tools/handoff_probe.cu;
# ac8 = attn_check of main (v8, hand-off bar.sync); ac8u = the same with the hand-off's two bar.sync replaced by
# barrier.sync (unaligned; calls/set7-unaligned-handoff.diff; same SASS barrier instruction, see kernels/NOTES.md).
set -o pipefail; mkdir -p /tmp/k1; for b in probe ac8 ac8u; do xz -dc .device/k1/$b.xz > /tmp/k1/$b && chmod +x /tmp/k1/$b; done
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
P=$OUT/k1-probe.log
for f in 0 1 2 3 4 5 6; do
  timeout 20 /tmp/k1/probe $f >> $P 2>&1
  for t in synccheck racecheck; do echo "=== form $f $t" >> $P
    timeout 40 compute-sanitizer --tool $t --print-limit 3 --error-exitcode 9 /tmp/k1/probe $f >> $P 2>&1; echo "form $f $t exit $?"; done
done; grep -E "^form|SUMMARY" $P | head -40
S=$OUT/k1-kernel-sanitizers.log
for b in ac8 ac8u; do for t in synccheck racecheck; do echo "=== $b $t" >> $S
  timeout 70 compute-sanitizer --tool $t --print-limit 3 --error-exitcode 9 /tmp/k1/$b --small --variants 3,12 >> $S 2>&1; echo "$b $t exit $?"; done; done
timeout 40 /tmp/k1/ac8u --correct --variants 3,9,12 --bhsd > $OUT/k1-ac8u-correct.log 2>&1; tail -1 $OUT/k1-ac8u-correct.log
