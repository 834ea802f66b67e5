# ncu --set full of the kernel's default and fa3 at one shape; details page as text under $OUT/ncu
# usage: ncu_pair.sh SEQLEN HEAD_DIM causal|full
mkdir -p $OUT/ncu
for b in flashcore-bleeding-edge fa3; do
  tag=$b-$1-$2-$3
  case $b in flashcore-*) k="regex:fwd_kernel";; *) k="regex:device_kernel|Flash";; esac
  timeout 120 ncu --set full --clock-control none -k "$k" --launch-skip 3 --launch-count 1 -f -o /tmp/$tag \
    python3 .device/calls/ncu_pair.py $b $1 $2 $3 > $OUT/ncu/$tag.run.log 2>&1 || tail -5 $OUT/ncu/$tag.run.log
  ncu --import /tmp/$tag.ncu-rep --page details > $OUT/ncu/$tag.details.txt 2>&1
  ncu --import /tmp/$tag.ncu-rep --page raw --csv > $OUT/ncu/$tag.raw.csv 2>&1
  grep -m3 "Duration\|SM Frequency" $OUT/ncu/$tag.details.txt
done
