// attn_check: standalone correctness / determinism / timing driver for flashcore's C++ attention
// kernels (no torch). Build (sm_90a):
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++17 -lineinfo -I kernels/include -I kernels \
//        kernels/bleeding_edge.cu kernels/tools/attn_check.cu -o build/attn_check
//   (add -DWITH_PHASE4 kernels/phase4.cu kernels/phase4x.cu to also run those kernels)
// Usage:
//   attn_check --correct            correctness list (all rows or a sample vs a CPU fp64 reference,
//                                   NaN poisoning, bit-exact determinism over 3 runs)
//   attn_check --small              a few small shapes (for compute-sanitizer)
//   attn_check --time               fa-paper shapes (16k tokens, hidden 2048, bf16): check + timing
//   options: --kernel be|phase4|phase4x  --variant N (-1 = default)  --variants i,j  --all-variants
//            --iters N  --max-seqlen S (time only S <= this)  --seed N
//            --bhsd   q, k, v stored [B, H, S, D] and passed as strided [B, S, H, D] views (no copy)
// Timing: median of --iters runs after 3 warm-ups, each run preceded by a 256 MB memset (L2 flush),
// cudaEvents around the kernel alone. TFLOPS = 4*B*Hq*D*(attended pairs) / t.
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "flashcore/api.h"
#include "bleeding_edge/variants.cuh"

using flashcore::AttnParams;
using flashcore::DType;

#define CK(x)                                                                                   \
  do {                                                                                          \
    cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__,   \
                   __LINE__, #x);                                                               \
      std::fflush(stdout);                                                                      \
      std::exit(2);                                                                             \
    }                                                                                           \
  } while (0)

// ------------------------------------------------------------------------------------------------
// device helpers
__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return (uint32_t)x;
}

template <typename T>
__global__ void fill_uniform(T* p, size_t n, uint64_t seed, float amp) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float u = (hash32(seed * 0x9E3779B97F4A7C15ULL + i) >> 8) * (1.0f / 16777216.0f);  // [0,1)
    const float v = (2.f * u - 1.f) * amp;
    if constexpr (sizeof(T) == 2 && std::is_same<T, __half>::value) p[i] = __float2half_rn(v);
    else p[i] = __float2bfloat16_rn(v);
  }
}

// ------------------------------------------------------------------------------------------------
struct Cfg {
  DType dt;
  int B, Hq, Hkv, Sq, Sk, D;
  bool causal;
  float amp;  // input magnitude
};

static const char* dname(DType d) { return d == DType::kBFloat16 ? "bf16" : "fp16"; }

static double attended_pairs(const Cfg& c) {
  if (!c.causal) return (double)c.Sq * c.Sk;
  double s = 0;
  for (int i = 0; i < c.Sq; ++i) {
    long v = (long)i + c.Sk - c.Sq + 1;
    s += (double)std::min<long>(std::max<long>(v, 0), c.Sk);
  }
  return s;
}

static float h2f(uint16_t x, DType dt) {
  if (dt == DType::kBFloat16) {
    uint32_t u = (uint32_t)x << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  __half h;
  std::memcpy(&h, &x, 2);
  return __half2float(h);
}

using LaunchFn = cudaError_t (*)(const AttnParams&, cudaStream_t);
static int g_variant = -1;
static bool g_bhsd = false;  // --bhsd: q, k, v in [B, H, S, D] memory, passed with their strides
static int* g_tile_counter = nullptr;  // AttnParams::tile_counter for the "dyn" variants (zero between launches)
static cudaError_t launch_be_variant(const AttnParams& p, cudaStream_t s) {
  return flashcore::be::launch_variant(p, s, g_variant);
}

struct Kernel {
  const char* name;
  LaunchFn launch;
  const char* (*supports)(const AttnParams&);
};

static Kernel pick_kernel(const std::string& k) {
  if (k == "be") return {"bleeding_edge", launch_be_variant, flashcore::supports_bleeding_edge};
#ifdef WITH_PHASE4
  if (k == "phase4") return {"phase4", flashcore::launch_phase4, flashcore::supports_phase4};
  if (k == "phase4x") return {"phase4x", flashcore::launch_phase4x, flashcore::supports_phase4x};
#endif
  std::fprintf(stderr, "unknown kernel %s\n", k.c_str());
  std::exit(2);
}

struct Buffers {
  void *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
  float* lse = nullptr;
  size_t nq = 0, nk = 0;
  void alloc(const Cfg& c) {
    nq = (size_t)c.B * c.Sq * c.Hq * c.D;
    nk = (size_t)c.B * c.Sk * c.Hkv * c.D;
    CK(cudaMalloc(&q, nq * 2));
    CK(cudaMalloc(&k, nk * 2));
    CK(cudaMalloc(&v, nk * 2));
    CK(cudaMalloc(&o, nq * 2));
    CK(cudaMalloc(&lse, (size_t)c.B * c.Hq * c.Sq * sizeof(float)));
  }
  void free_all() {
    cudaFree(q);
    cudaFree(k);
    cudaFree(v);
    cudaFree(o);
    cudaFree(lse);
  }
};

static AttnParams make_params(const Cfg& c, const Buffers& b) {
  AttnParams p{};
  p.q = b.q;
  p.k = b.k;
  p.v = b.v;
  p.o = b.o;
  p.lse = b.lse;
  p.batch = c.B;
  p.heads_q = c.Hq;
  p.heads_kv = c.Hkv;
  p.seqlen_q = c.Sq;
  p.seqlen_k = c.Sk;
  p.head_dim = c.D;
  p.softmax_scale = 1.0f / std::sqrt((float)c.D);
  p.causal = c.causal;
  p.dtype = c.dt;
  flashcore::set_contiguous_strides(p);
  p.tile_counter = g_tile_counter;
  if (g_bhsd) {  // q, k, v stored [B, H, S, D], passed as strided [B, S, H, D] views; O stays contiguous
    p.q_stride = {(int64_t)c.Hq * c.Sq * c.D, c.D, (int64_t)c.Sq * c.D};
    p.k_stride = {(int64_t)c.Hkv * c.Sk * c.D, c.D, (int64_t)c.Sk * c.D};
    p.v_stride = p.k_stride;
  }
  return p;
}

// [B, H, S, D] host copy -> [B, S, H, D] (what check() indexes).
static std::vector<uint16_t> bhsd_to_bshd(const std::vector<uint16_t>& x, int B, int S, int H, int D) {
  std::vector<uint16_t> y(x.size());
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < S; ++i)
        std::memcpy(&y[(((size_t)b * S + i) * H + h) * D], &x[(((size_t)b * H + h) * S + i) * D], (size_t)D * 2);
  return y;
}

static void poison(const Cfg& c, const Buffers& b) {
  CK(cudaMemset(b.o, 0xFF, b.nq * 2));  // 0xFFFF is NaN in fp16 and bf16
  CK(cudaMemset(b.lse, 0xFF, (size_t)c.B * c.Hq * c.Sq * sizeof(float)));  // NaN
}

// Runs once; returns false on a launch/runtime error (printed).
static bool run_once(const Kernel& K, const AttnParams& p) {
  cudaError_t e = K.launch(p, 0);
  if (e != cudaSuccess) {
    std::printf("    launch error: %s\n", cudaGetErrorString(e));
    return false;
  }
  e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    std::printf("    runtime error: %s\n", cudaGetErrorString(e));
    std::fflush(stdout);
    std::exit(3);  // the context is unusable after a device fault
  }
  if (p.tile_counter) {  // a launch must leave the counter zero for the next one
    int left = 0;
    CK(cudaMemcpy(&left, p.tile_counter, sizeof left, cudaMemcpyDeviceToHost));
    if (left != 0) {
      std::printf("    tile counter left at %d (must be 0)\n", left);
      CK(cudaMemset(p.tile_counter, 0, sizeof(int)));
      return false;
    }
  }
  return true;
}

struct CheckResult {
  double max_err = 0, mean_err = 0, rel_fro = 0, lse_max_err = 0, ref_max = 0;
  long nan_o = 0, nan_lse = 0, rows_checked = 0;
};

// fp64 reference on the selected rows (b, h, i) packed as b*Hq*Sq + h*Sq + i.
static CheckResult check(const Cfg& c, const std::vector<uint16_t>& hq, const std::vector<uint16_t>& hk,
                         const std::vector<uint16_t>& hv, const std::vector<uint16_t>& ho,
                         const std::vector<float>& hlse, const std::vector<long>& rows) {
  CheckResult r;
  for (uint16_t x : ho) {
    float f = h2f(x, c.dt);
    if (!std::isfinite(f)) ++r.nan_o;
  }
  for (float f : hlse)
    if (std::isnan(f) || f == INFINITY) ++r.nan_lse;
  const double scale = 1.0 / std::sqrt((double)c.D);
  const int g = c.Hq / c.Hkv;
  const int nt = std::max(1u, std::min(32u, std::thread::hardware_concurrency()));
  std::vector<float> fk(hk.size()), fv(hv.size());
  for (size_t i = 0; i < hk.size(); ++i) {
    fk[i] = h2f(hk[i], c.dt);
    fv[i] = h2f(hv[i], c.dt);
  }
  std::vector<double> se(nt, 0), sref(nt, 0), mx(nt, 0), lmx(nt, 0), rmx(nt, 0), ssum(nt, 0);
  std::vector<std::thread> th;
  for (int t = 0; t < nt; ++t) {
    th.emplace_back([&, t] {
      std::vector<double> s(c.Sk), acc(c.D), qd(c.D);
      for (size_t ri = t; ri < rows.size(); ri += nt) {
        const long id = rows[ri];
        const int i = id % c.Sq;
        const int h = (id / c.Sq) % c.Hq;
        const int b = id / ((long)c.Sq * c.Hq);
        const int hkv = h / g;
        const long lim = c.causal ? std::min<long>((long)i + c.Sk - c.Sq + 1, c.Sk) : c.Sk;
        const size_t qoff = (((size_t)b * c.Sq + i) * c.Hq + h) * c.D;
        for (int d = 0; d < c.D; ++d) qd[d] = h2f(hq[qoff + d], c.dt);
        double m = -INFINITY;
        for (long j = 0; j < lim; ++j) {
          const size_t koff = (((size_t)b * c.Sk + j) * c.Hkv + hkv) * c.D;
          double a = 0;
          for (int d = 0; d < c.D; ++d) a += qd[d] * (double)fk[koff + d];
          s[j] = a * scale;
          m = std::max(m, s[j]);
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        double l = 0;
        for (long j = 0; j < lim; ++j) {
          const double pj = std::exp(s[j] - m);
          l += pj;
          const size_t voff = (((size_t)b * c.Sk + j) * c.Hkv + hkv) * c.D;
          for (int d = 0; d < c.D; ++d) acc[d] += pj * (double)fv[voff + d];
        }
        const double lse_ref = lim > 0 ? m + std::log(l) : -INFINITY;
        for (int d = 0; d < c.D; ++d) {
          const double ref = lim > 0 ? acc[d] / l : 0.0;
          const double out = h2f(ho[qoff + d], c.dt);
          const double e = std::fabs(out - ref);
          if (!(e <= mx[t])) mx[t] = std::isnan(e) ? INFINITY : std::max(mx[t], e);
          se[t] += e * e;
          ssum[t] += e;
          sref[t] += ref * ref;
          rmx[t] = std::max(rmx[t], std::fabs(ref));
        }
        const double lo = hlse[((size_t)b * c.Hq + h) * c.Sq + i];
        double le;
        if (lim <= 0) le = (lo == -INFINITY) ? 0.0 : INFINITY;
        else le = std::fabs(lo - lse_ref);
        if (!(le <= lmx[t])) lmx[t] = std::isnan(le) ? INFINITY : std::max(lmx[t], le);
      }
    });
  }
  for (auto& x : th) x.join();
  double se_all = 0, sref_all = 0, ssum_all = 0;
  for (int t = 0; t < nt; ++t) {
    r.max_err = std::max(r.max_err, mx[t]);
    r.lse_max_err = std::max(r.lse_max_err, lmx[t]);
    r.ref_max = std::max(r.ref_max, rmx[t]);
    se_all += se[t];
    sref_all += sref[t];
    ssum_all += ssum[t];
  }
  r.rows_checked = rows.size();
  r.mean_err = ssum_all / std::max<double>(1, (double)rows.size() * c.D);
  r.rel_fro = sref_all > 0 ? std::sqrt(se_all / sref_all) : std::sqrt(se_all);
  return r;
}

static std::vector<long> pick_rows(const Cfg& c, long max_rows, uint64_t seed) {
  const long total = (long)c.B * c.Hq * c.Sq;
  std::vector<long> rows;
  if (total <= max_rows) {
    for (long r = 0; r < total; ++r) rows.push_back(r);
    return rows;
  }
  // edges of every (b, h) at the corners, plus pseudo-random rows
  auto add = [&](int b, int h, long i) {
    if (i >= 0 && i < c.Sq) rows.push_back(((long)b * c.Hq + h) * c.Sq + i);
  };
  int bs[2] = {0, c.B - 1}, hs[2] = {0, c.Hq - 1};
  for (int b : bs)
    for (int h : hs) {
      add(b, h, 0);
      add(b, h, c.Sq - 1);
      add(b, h, c.Sq - c.Sk);
      add(b, h, c.Sq - c.Sk - 1);
      add(b, h, 127);
      add(b, h, 128);
    }
  uint64_t x = seed * 2654435761ULL + 12345;
  while ((long)rows.size() < max_rows) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rows.push_back((long)(x % (uint64_t)total));
  }
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  return rows;
}

static void fill_inputs(const Cfg& c, const Buffers& b, uint64_t seed) {
  if (c.dt == DType::kBFloat16) {
    fill_uniform<<<1024, 256>>>((__nv_bfloat16*)b.q, b.nq, seed * 3 + 0, c.amp);
    fill_uniform<<<1024, 256>>>((__nv_bfloat16*)b.k, b.nk, seed * 3 + 1, c.amp);
    fill_uniform<<<1024, 256>>>((__nv_bfloat16*)b.v, b.nk, seed * 3 + 2, c.amp);
  } else {
    fill_uniform<<<1024, 256>>>((__half*)b.q, b.nq, seed * 3 + 0, c.amp);
    fill_uniform<<<1024, 256>>>((__half*)b.k, b.nk, seed * 3 + 1, c.amp);
    fill_uniform<<<1024, 256>>>((__half*)b.v, b.nk, seed * 3 + 2, c.amp);
  }
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
}

struct Tol {
  double o, lse;
};
static Tol tol_for(const Cfg& c) {
  // errors are judged relative to max(1, max|O_ref|) (inputs of magnitude amp give |O| <= amp)
  return c.dt == DType::kBFloat16 ? Tol{2e-2, 2e-3} : Tol{4e-3, 2e-3};
}

static int g_fail = 0;

// Correctness (+ determinism over ndet extra runs) of one config. Returns true if it passed.
static bool correctness(const Kernel& K, const Cfg& c, uint64_t seed, long max_rows, int ndet, Buffers* keep = nullptr,
                        std::vector<uint16_t>* out_o = nullptr, std::vector<float>* out_lse = nullptr) {
  Buffers b;
  b.alloc(c);
  fill_inputs(c, b, seed);
  AttnParams p = make_params(c, b);
  std::printf("%-4s D%-3d %s B%-2d H%d/%d Sq%-5d Sk%-5d amp%-3g ", dname(c.dt), c.D, c.causal ? "causal" : "full  ", c.B,
              c.Hq, c.Hkv, c.Sq, c.Sk, c.amp);
  std::fflush(stdout);
  if (const char* why = K.supports(p)) {
    std::printf("| unsupported: %s\n", why);
    b.free_all();
    return true;
  }
  poison(c, b);
  if (!run_once(K, p)) {
    ++g_fail;
    b.free_all();
    std::printf("FAIL\n");
    return false;
  }
  std::vector<uint16_t> hq(b.nq), hk(b.nk), hv(b.nk), ho(b.nq);
  std::vector<float> hl((size_t)c.B * c.Hq * c.Sq);
  CK(cudaMemcpy(hq.data(), b.q, b.nq * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hk.data(), b.k, b.nk * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hv.data(), b.v, b.nk * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(ho.data(), b.o, b.nq * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hl.data(), b.lse, hl.size() * 4, cudaMemcpyDeviceToHost));
  if (g_bhsd) {
    hq = bhsd_to_bshd(hq, c.B, c.Sq, c.Hq, c.D);
    hk = bhsd_to_bshd(hk, c.B, c.Sk, c.Hkv, c.D);
    hv = bhsd_to_bshd(hv, c.B, c.Sk, c.Hkv, c.D);
  }
  // determinism: poison and rerun, compare bytes
  bool det = true;
  for (int r = 0; r < ndet; ++r) {
    poison(c, b);
    if (!run_once(K, p)) det = false;
    std::vector<uint16_t> o2(b.nq);
    std::vector<float> l2(hl.size());
    CK(cudaMemcpy(o2.data(), b.o, b.nq * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(l2.data(), b.lse, l2.size() * 4, cudaMemcpyDeviceToHost));
    if (std::memcmp(o2.data(), ho.data(), b.nq * 2) != 0 || std::memcmp(l2.data(), hl.data(), hl.size() * 4) != 0)
      det = false;
  }
  const std::vector<long> rows = pick_rows(c, max_rows, seed);
  CheckResult r = check(c, hq, hk, hv, ho, hl, rows);
  const Tol t = tol_for(c);
  const double norm = std::max(1.0, r.ref_max);
  const bool ok = r.nan_o == 0 && r.nan_lse == 0 && det && r.max_err / norm <= t.o && r.lse_max_err <= t.lse * norm * norm;
  std::printf("| rows %-6ld max %.2e mean %.2e rel %.2e lse %.2e nanO %ld nanL %ld det %s | %s\n", r.rows_checked,
              r.max_err, r.mean_err, r.rel_fro, r.lse_max_err, r.nan_o, r.nan_lse, ndet ? (det ? "ok" : "DIFF") : "-",
              ok ? "PASS" : "FAIL");
  std::fflush(stdout);
  if (!ok) ++g_fail;
  if (keep) {
    *keep = b;
    if (out_o) *out_o = std::move(ho);
    if (out_lse) *out_lse = std::move(hl);
  } else {
    b.free_all();
  }
  return ok;
}

static std::vector<Cfg> correctness_list(bool small) {
  struct S {
    int B, Hq, Hkv, Sq, Sk;
  };
  std::vector<S> shapes;
  if (small) {
    shapes = {{1, 1, 1, 1, 1},     {2, 3, 3, 17, 17},    {1, 2, 1, 257, 257},
              {1, 2, 2, 130, 300}, {1, 2, 2, 300, 130},  {2, 70, 70, 100, 100},  // > 132 tiles
              {2, 40, 20, 700, 300}};  // > 132 tiles of unequal causal weight, the first m-blocks attend nothing
  } else {
    shapes = {{1, 1, 1, 1, 1},       {2, 3, 3, 17, 17},     {1, 2, 2, 100, 100},  {2, 4, 2, 257, 257},
              {1, 4, 1, 1000, 1000}, {1, 2, 2, 128, 384},   {1, 2, 2, 384, 130},  {1, 2, 2, 1, 1000},
              {1, 2, 2, 1000, 1},    {1, 2, 2, 300, 77},    {1, 2, 1, 77, 300},   {2, 2, 2, 1024, 1024},
              {1, 1, 1, 4000, 4000}, {1, 2, 2, 200, 1500},  {4, 8, 2, 1000, 777},  {8, 6, 3, 300, 300},
              {2, 40, 20, 700, 300}};
    // the last three have more tiles than SMs (persistent schedules loop over several tiles)
  }
  std::vector<Cfg> v;
  for (DType dt : {DType::kBFloat16, DType::kFloat16})
    for (int D : {64, 128})
      for (bool causal : {false, true})
        for (const S& s : shapes) v.push_back({dt, s.B, s.Hq, s.Hkv, s.Sq, s.Sk, D, causal, 1.0f});
  if (!small) {  // large magnitude
    for (DType dt : {DType::kBFloat16, DType::kFloat16})
      for (int D : {64, 128})
        for (bool causal : {false, true}) {
          v.push_back({dt, 2, 4, 2, 257, 257, D, causal, 30.0f});
          v.push_back({dt, 2, 2, 2, 1024, 1024, D, causal, 30.0f});
        }
  }
  return v;
}

static double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void timing(const Kernel& K, const std::vector<int>& variants, int iters, uint64_t seed, int max_seqlen) {
  void* flush = nullptr;
  const size_t flush_bytes = 256ull << 20;
  CK(cudaMalloc(&flush, flush_bytes));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  struct Row {
    std::string what;
    double ms, tflops;
    bool ok;
  };
  std::vector<Row> table;
  const int seqs[6] = {512, 1024, 2048, 4096, 8192, 16384};
  for (int D : {64, 128})
    for (bool causal : {false, true})
      for (int S : seqs) {
        if (S > max_seqlen) continue;
        Cfg c{DType::kBFloat16, 16384 / S, 2048 / D, 2048 / D, S, S, D, causal, 1.0f};
        for (int vi : variants) {
          g_variant = vi;
          const char* vname = flashcore::be::variant_name(D, flashcore::be::resolve_variant(make_params(c, Buffers{}), vi));
          if (K.launch != launch_be_variant) vname = K.name;
          std::printf("[%s] ", vname ? vname : "?");
          const int before = g_fail;
          Buffers b;
          std::vector<uint16_t> o_first;
          std::vector<float> l_first;
          correctness(K, c, seed, 256, 0, &b, &o_first, &l_first);
          const bool ok = g_fail == before;
          AttnParams p = make_params(c, b);
          if (K.supports(p)) {
            b.free_all();
            continue;
          }
          for (int w = 0; w < 3; ++w) run_once(K, p);
          std::vector<float> t(iters);
          for (int it = 0; it < iters; ++it) {
            CK(cudaMemsetAsync(flush, it & 0xFF, flush_bytes, 0));
            CK(cudaEventRecord(e0, 0));
            CK(K.launch(p, 0));
            CK(cudaEventRecord(e1, 0));
            CK(cudaEventSynchronize(e1));
            CK(cudaGetLastError());
            CK(cudaEventElapsedTime(&t[it], e0, e1));
          }
          // determinism across all the timed runs: the last output must equal the first
          std::vector<uint16_t> o2(b.nq);
          std::vector<float> l2(l_first.size());
          CK(cudaMemcpy(o2.data(), b.o, b.nq * 2, cudaMemcpyDeviceToHost));
          CK(cudaMemcpy(l2.data(), b.lse, l2.size() * 4, cudaMemcpyDeviceToHost));
          const bool det = std::memcmp(o2.data(), o_first.data(), b.nq * 2) == 0 &&
                           std::memcmp(l2.data(), l_first.data(), l2.size() * 4) == 0;
          if (!det) ++g_fail;
          const double ms = median(t);
          const double fl = 4.0 * c.B * c.Hq * c.D * attended_pairs(c);
          const double tf = fl / (ms * 1e-3) / 1e12;
          std::printf("    time: median %.4f ms (min %.4f) over %d  -> %.1f TFLOPS  det(%d runs) %s\n", ms,
                      *std::min_element(t.begin(), t.end()), iters, tf, iters + 4, det ? "ok" : "DIFF");
          std::fflush(stdout);
          char buf[160];
          std::snprintf(buf, sizeof buf, "%-28s D%-3d %-6s B%-2d H%-2d S%-5d", vname ? vname : "?", D,
                        causal ? "causal" : "full", c.B, c.Hq, S);
          table.push_back({buf, ms, tf, ok && det});
          b.free_all();
        }
      }
  std::printf("\n=== timing summary (bf16, median, L2 flushed) ===\n");
  for (const Row& r : table) std::printf("%s  %9.4f ms  %6.1f TFLOPS  %s\n", r.what.c_str(), r.ms, r.tflops, r.ok ? "ok" : "FAIL");
  cudaFree(flush);
}

static std::vector<int> all_variant_ids() {
  std::vector<int> v;
  for (int i = 0; flashcore::be::variant_name(64, i) || flashcore::be::variant_name(128, i); ++i) v.push_back(i);
  return v;
}

int main(int argc, char** argv) {
  bool do_correct = false, do_small = false, do_time = false, all_variants = false;
  std::vector<int> var_list;
  int iters = 20, max_seqlen = 16384;
  uint64_t seed = 1234;
  std::string kname = "be";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--correct") do_correct = true;
    else if (a == "--small") do_small = true;
    else if (a == "--time") do_time = true;
    else if (a == "--all-variants") all_variants = true;
    else if (a == "--bhsd") g_bhsd = true;
    else if (a == "--variant" && i + 1 < argc) g_variant = std::atoi(argv[++i]);
    else if (a == "--variants" && i + 1 < argc) {
      std::string l = argv[++i];
      for (size_t pos = 0; pos <= l.size();) {
        size_t e = l.find(',', pos);
        if (e == std::string::npos) e = l.size();
        var_list.push_back(std::atoi(l.substr(pos, e - pos).c_str()));
        pos = e + 1;
      }
    }
    else if (a == "--iters" && i + 1 < argc) iters = std::atoi(argv[++i]);
    else if (a == "--max-seqlen" && i + 1 < argc) max_seqlen = std::atoi(argv[++i]);
    else if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--kernel" && i + 1 < argc) kname = argv[++i];
    else {
      std::printf("usage: %s [--correct] [--small] [--time] [--kernel be|phase4|phase4x] [--variant N] "
                  "[--all-variants] [--variants i,j,..] [--iters N] [--max-seqlen S] [--seed N] [--bhsd]\n", argv[0]);
      return a == "--help" ? 0 : 1;
    }
  }
  int dev = 0;
  CK(cudaGetDevice(&dev));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, dev));
  int clk = 0;
  cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, dev);
  std::printf("device: %s  sm_%d%d  SMs %d  L2 %d MB  max clock %d MHz\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, prop.l2CacheSize >> 20, clk / 1000);
  CK(cudaMalloc(&g_tile_counter, sizeof(int)));
  CK(cudaMemset(g_tile_counter, 0, sizeof(int)));
  Kernel K = pick_kernel(kname);
  std::printf("kernel: %s  variant %d\n", K.name, g_variant);
  if (do_small || do_correct) {
    const int v0 = g_variant;
    std::vector<int> vars = {v0};
    if (all_variants) vars = all_variant_ids();
    if (!var_list.empty()) vars = var_list;
    for (int vi : vars) {
      g_variant = vi;
      std::printf("--- correctness (%s), variant %d ---\n", do_small ? "small" : "full", vi);
      for (const Cfg& c : correctness_list(do_small)) correctness(K, c, seed++, 4096, do_small ? 1 : 2);
    }
    g_variant = v0;
  }
  if (do_time) {
    std::vector<int> vars = {g_variant};
    if (all_variants) vars = all_variant_ids();
    if (!var_list.empty()) vars = var_list;
    timing(K, vars, iters, seed, max_seqlen);
  }
  std::printf("\nfailures: %d\n", g_fail);
  return g_fail ? 1 : 0;
}
