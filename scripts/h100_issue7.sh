#!/usr/bin/env bash
# H100 evidence for issue 7 (trustworthy under faults and cheating), one device call (~3 minutes):
#   1. suites/faults.toml   — illegal address, misaligned address, launch failure, hang, OOM, abort and
#      segfault in the middle of a run: each cell `failed` with its reason, every other cell `ok`;
#   2. suites/exploits.toml — the cheating backends `rejected` with the trick named, the real backends
#      (sdpa-flash, sdpa-cudnn, flex) and the honest custom control `ok`.
# Databases: results/h100/faults.db and results/h100/exploits.db (replaced on each run); worker logs and
# copies of the databases go to $OUT.
#   scripts/h100_issue7.sh
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out" results/h100
. scripts/device_setup.sh
x() { echo "+ $*"; "$@"; echo "exit code $?"; }
# the test backends are never in the default registry: name them (this also reaches the workers)
FLASHCORE_BACKENDS="$(python3 -m harness.testing all)"
export FLASHCORE_BACKENDS
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader

for s in faults exploits; do
  db=results/h100/$s.db
  rm -f "$db" "$db-wal" "$db-shm"
  start=$(date +%s)
  x flashcore run --suite "$s" --db "$db" --run-id "h100-$s" --log-dir "$out/logs-$s" > "$out/run-$s.txt" 2>&1
  tail -n 3 "$out/run-$s.txt"
  echo "== $s: $(( $(date +%s) - start )) s, $(ls "$out/logs-$s" | wc -l) worker(s) started"
  x flashcore show --db "$db"
  # nothing of the run is left on the GPU: killed and crashed workers took their contexts with them
  echo "compute processes still on the GPU: $(nvidia-smi --query-compute-apps=pid --format=csv,noheader | wc -l)"
  python3 scripts/db_copy.py "$db" "$out/"
done

# the details behind the verdicts: what each custom-kernel backend launched, the timing of the side
# stream (events vs device-synced), and the error text of each fault
python3 - <<'EOF'
import json, sqlite3
for name in ("faults", "exploits"):
    con = sqlite3.connect(f"results/h100/{name}.db")
    print(f"\n== {name}: status by backend")
    for b, st, n in con.execute("SELECT backend, status, count(*) FROM results GROUP BY backend, status ORDER BY backend"):
        print(f"  {b:26s} {st:9s} {n}")
    for b, key, st, reason, err, extra in con.execute(
            "SELECT backend, problem_key, status, reason, error_text, extra FROM results ORDER BY id"):
        e = json.loads(extra or "{}")
        if e.get("kernels_launched"):
            print(f"  {b} {key}: kernels launched: {e['kernels_launched'][:6]}")
        if b in ("exploit-side-stream", "exploit-fake-fast") or (st == "failed" and b.startswith("fault-")):
            print(f"  {b} {key}: {st}: {reason[:160]}")
            if e.get("samples_ms"):
                print(f"     events median {sorted(e['samples_ms'])[len(e['samples_ms']) // 2]:.4g} ms, "
                      f"synced {e.get('synced_ms')}")
            if err:
                print("     error text: ... " + " | ".join(err.strip().splitlines()[-3:])[:300])
EOF

# the kernel-name check profiles one call of each custom-kernel cell before that cell is timed: does a
# finished torch.profiler session leave anything behind that changes later timings (CUPTI left attached)?
python3 - <<'EOF'
import time
import torch
import torch.nn.functional as F
from harness.kernel_names import launched

q = torch.randn(2, 16, 2048, 128, device="cuda", dtype=torch.bfloat16)
x = torch.zeros(1, device="cuda")

def gpu_ms(n=60):
    ts = []
    for _ in range(n):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(200_000)
        s.record(); F.scaled_dot_product_attention(q, q, q); e.record(); e.synchronize()
        ts.append(s.elapsed_time(e))
    return sorted(ts)[n // 2]

def host_us(n=2000):
    torch.cuda.synchronize(); t0 = time.perf_counter()
    for _ in range(n):
        x.add_(1)
    t = (time.perf_counter() - t0) / n * 1e6; torch.cuda.synchronize(); return t

gpu_ms(10); host_us(200)
b_gpu, b_host = gpu_ms(), host_us()
tr = launched(lambda: F.scaled_dot_product_attention(q, q, q), "cuda")
a_gpu, a_host = gpu_ms(), host_us()
print(f"profiler after-effect: SDPA GPU time {b_gpu:.4f} -> {a_gpu:.4f} ms ({a_gpu / b_gpu - 1:+.2%}); "
      f"host launch {b_host:.2f} -> {a_host:.2f} us ({a_host / b_host - 1:+.2%}); kernels seen: {tr.kernels[:2]}")
EOF

# the device returns at most 8 files from $OUT: pack the worker logs and run outputs into one
tar czf /tmp/issue7-out.tgz -C "$out" --exclude='*.db' . \
  && find "$out" -mindepth 1 -maxdepth 1 ! -name '*.db' -exec rm -rf {} + && mv /tmp/issue7-out.tgz "$out/"
