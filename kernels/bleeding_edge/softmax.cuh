// Online softmax on the wgmma m64nNk16 f32 accumulator fragment.
//
// Fragment layout (per warpgroup, 64 rows; warp w owns rows 16w..16w+15): register r of a thread
// with lane L holds row 16w + L/4 + 8*((r>>1)&1), column 8*(r>>2) + 2*(L%4) + (r&1). So each thread
// holds two rows ("row 0" and "row 1") and a row is spread over the 4 lanes of a quad: row
// reductions are the thread's own values plus two xor-shuffles (1, 2).
//
// Scale folding: p = exp2(s * scale*log2(e) - m * scale*log2(e)), one FFMA + one MUFU.EX2 per score.
// Row sums are kept per thread (partial over the thread's columns) and reduced across the quad once,
// at the end; the rescale factor is identical across a quad so partial sums rescale correctly.
// Rows with no attended key so far have m = -inf: their exponent offset is taken as 0 so that
// exp2(-inf - 0) = 0 (no NaN), and the factor exp2(-inf) = 0 wipes nothing that matters.
#pragma once
#include <cstdint>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace flashcore { namespace be {

__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
  return v;
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  return v;
}

// Sets to -inf every score whose key column (col0 + fragment column) is >= the row's limit.
template <int NR>
__device__ __forceinline__ void mask_scores(float (&s)[NR], int col0, int lim0, int lim1, int lane) {
  const int c = col0 + 2 * (lane & 3);
#pragma unroll
  for (int r = 0; r < NR; ++r) {
    const int col = c + 8 * (r >> 2) + (r & 1);
    const int lim = ((r >> 1) & 1) ? lim1 : lim0;
    if (col >= lim) s[r] = -INFINITY;
  }
}

struct OnlineSoftmax {
  float m[2];  // running row max of the raw scores
  float l[2];  // running per-thread partial row sums

  __device__ __forceinline__ void init() {
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.f;
  }

  // Turns the scores s into unnormalised probabilities in place; returns in factor[] the rescale
  // factors for the output accumulator (meaningless when kFirst).
  template <bool kFirst, int NR>
  __device__ __forceinline__ void step(float (&s)[NR], float scale_log2, float (&factor)[2]) {
    float mx[2];
    mx[0] = kFirst ? -INFINITY : m[0];
    mx[1] = kFirst ? -INFINITY : m[1];
#pragma unroll
    for (int r = 0; r < NR; ++r) mx[(r >> 1) & 1] = fmaxf(mx[(r >> 1) & 1], s[r]);
    float off[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = quad_max(mx[i]);
      off[i] = (mx[i] == -INFINITY) ? 0.f : mx[i] * scale_log2;
      factor[i] = kFirst ? 1.f : ex2_approx(m[i] * scale_log2 - off[i]);
      m[i] = mx[i];
    }
    float sum[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < NR; ++r) {
      const int i = (r >> 1) & 1;
      s[r] = ex2_approx(fmaf(s[r], scale_log2, -off[i]));
      sum[i] += s[r];
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) l[i] = kFirst ? sum[i] : fmaf(l[i], factor[i], sum[i]);
  }

  // Final row sums across the quad; inv[] = 1/l (0 for rows that attended nothing), lse[] natural log.
  __device__ __forceinline__ void finalize(float scale, float (&inv)[2], float (&lse)[2]) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float t = quad_sum(l[i]);
      const bool empty = !(t > 0.f) || m[i] == -INFINITY;
      inv[i] = empty ? 0.f : 1.f / t;
      lse[i] = empty ? -INFINITY : m[i] * scale + logf(t);
    }
  }
};

template <int NR>
__device__ __forceinline__ void rescale_rows(float (&o)[NR], const float (&f)[2]) {
#pragma unroll
  for (int r = 0; r < NR; ++r) o[r] *= f[(r >> 1) & 1];
}

// Packs probabilities into the RS-wgmma A fragment: the accumulator layout of columns [16k, 16k+16)
// is register-for-register the A-operand layout of k-step k, so P[j] = pack(s[2j], s[2j+1]).
template <bool kBF16, int NR>
__device__ __forceinline__ void pack_probs(const float (&s)[NR], uint32_t (&p)[NR / 2]) {
#pragma unroll
  for (int j = 0; j < NR / 2; ++j) {
    if constexpr (kBF16) {
      __nv_bfloat162 h = __floats2bfloat162_rn(s[2 * j], s[2 * j + 1]);
      p[j] = *reinterpret_cast<uint32_t*>(&h);
    } else {
      __half2 h = __floats2half2_rn(s[2 * j], s[2 * j + 1]);
      p[j] = *reinterpret_cast<uint32_t*>(&h);
    }
  }
}

}}  // namespace flashcore::be
