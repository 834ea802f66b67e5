"""Compare two attn_check timing logs cell by cell; print ratios (B over A, TFLOPS) and a verdict line.
Verdict KEEP when B's geomean over all cells is >= 0.995 of A's and no cell is below 0.95."""
import math, re, sys
pat = re.compile(r"^(.*?)\s+(D\d+)\s+(full|causal)\s+B(\d+)\s+H(\d+)\s+S(\d+)\s+([\d.]+) ms\s+([\d.]+) TFLOPS\s+(\S+)")
def load(path):
    out, on = {}, False
    for line in open(path):
        if "timing summary" in line: on = True; continue
        m = pat.match(line.strip()) if on else None
        if m: out[(m[1].strip(), m[2], m[3], int(m[6]))] = (float(m[8]), m[9])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
keys = [k for k in a if k in b]
rs = []
for k in keys:
    r = b[k][0] / a[k][0]; rs.append(r)
    print(f"{k[0]:<40} {k[1]} {k[2]:<6} S{k[3]:<6} {a[k][0]:7.1f} -> {b[k][0]:7.1f}  x{r:.3f} {b[k][1]}")
if not rs: print("VERDICT NONE (no common cells)"); sys.exit(0)
g = math.exp(sum(map(math.log, rs)) / len(rs)); lo = min(rs)
bad = [k for k in keys if b[k][1] != "ok"]
v = "KEEP" if g >= 0.995 and lo >= 0.95 and not bad else "DROP"
print(f"VERDICT {v} geomean x{g:.3f} min x{lo:.3f} cells {len(rs)} not-ok {len(bad)}")
