# R4 (tenth set): v8 against v13, timing alone, on the machine R3 left warm. The exact command of the call
# (carry .device/r2 = the two attn_check binaries, xz; .device/l/cmp_time.py = calls/set6-cmp_time.py):
K=/tmp/k1; xz -dc .device/r2/ac8.xz > $K/ac8; chmod +x $K/ac8; for b in ac8 ac13; do timeout 38 $K/$b --time --variants 4,12 --iters 10 > $OUT/r4-time-$b.log 2>&1; echo "$b exit $?"; done; python3 .device/l/cmp_time.py $OUT/r4-time-ac8.log $OUT/r4-time-ac13.log > $OUT/r4-cmp.log; tail -1 $OUT/r4-cmp.log; date -u
