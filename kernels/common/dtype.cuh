// 16-bit <-> fp32 conversion for the two storage types flashcore accepts (fp16, bf16).
// Templated on the CUDA type so kernels instantiate once per dtype and convert without branches.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

namespace flashcore {
namespace common {

template <typename T> struct Cvt;

template <> struct Cvt<__half> {
  __device__ static float to_float(__half x) { return __half2float(x); }
  __device__ static __half from_float(float x) { return __float2half_rn(x); }
  __device__ static float2 to_float2(uint32_t bits) {
    __half2 h = *reinterpret_cast<const __half2*>(&bits);
    return __half22float2(h);
  }
  __device__ static uint32_t from_float2(float a, float b) {
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
};

template <> struct Cvt<__nv_bfloat16> {
  __device__ static float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  __device__ static __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
  __device__ static float2 to_float2(uint32_t bits) {
    __nv_bfloat162 h = *reinterpret_cast<const __nv_bfloat162*>(&bits);
    return __bfloat1622float2(h);
  }
  __device__ static uint32_t from_float2(float a, float b) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
};

// 8 consecutive 16-bit values (one 16-byte load) -> 8 floats.
template <typename T>
__device__ inline void unpack8(const uint4& raw, float (&f)[8]) {
  const float2 a = Cvt<T>::to_float2(raw.x), b = Cvt<T>::to_float2(raw.y);
  const float2 c = Cvt<T>::to_float2(raw.z), d = Cvt<T>::to_float2(raw.w);
  f[0] = a.x; f[1] = a.y; f[2] = b.x; f[3] = b.y; f[4] = c.x; f[5] = c.y; f[6] = d.x; f[7] = d.y;
}

// 4 floats -> 4 consecutive 16-bit values (one 8-byte store).
template <typename T>
__device__ inline uint2 pack4(float a, float b, float c, float d) {
  return make_uint2(Cvt<T>::from_float2(a, b), Cvt<T>::from_float2(c, d));
}

}  // namespace common
}  // namespace flashcore
