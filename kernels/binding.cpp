// The torch glue: ops flashcore::phase4, flashcore::phase4x and (when its source is built in,
// FLASHCORE_HAS_BLEEDING_EDGE) flashcore::bleeding_edge. phase4 and phase4x take contiguous q/k/v;
// bleeding_edge takes any batch/seq/head strides with a contiguous head_dim (a bhsd tensor viewed as
// bshd runs without a copy). O is always a new contiguous [b, sq, hq, d] tensor. Each validates its inputs with messages that
// name the problem and what is allowed, asks the kernel's supports_* function, launches on the current
// stream and checks the launch. The kernels themselves (kernels/*.cu) know nothing of torch.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
// c10's stream header rather than ATen/cuda/CUDAContext.h: the same current stream
// (at::cuda::getCurrentCUDAStream is c10::cuda's), without pulling in cuBLAS/cuSPARSE headers that a
// minimal CUDA toolkit lacks.
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <climits>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>

#include "flashcore/api.h"

namespace {

using LaunchFn = cudaError_t (*)(const flashcore::AttnParams&, cudaStream_t);
using SupportsFn = const char* (*)(const flashcore::AttnParams&);

// Numbers in messages are turned into strings here (std::to_string / snprintf) and reach TORCH_CHECK as
// strings. On the H100 image (torch 2.11) the first TORCH_CHECK that streamed an int64 and an
// IntArrayRef died with SIGSEGV instead of raising, while messages of strings, devices and dtypes raised
// fine (results/h100/kernels/README.md).
std::string num(int64_t x) { return std::to_string(x); }
std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}
// "[2, 128, 8, 64]"
std::string dims(c10::IntArrayRef a) {
  std::string s = "[";
  for (size_t i = 0; i < a.size(); ++i) s += (i ? ", " : "") + std::to_string(a[i]);
  return s + "]";
}

// strided: the kernel takes any batch/seq/head strides (its supports_* function judges them), so only a
// contiguous head_dim is required here; otherwise the whole tensor must be contiguous.
void check_tensor(const char* op, const char* name, const at::Tensor& t, const at::Tensor& q, bool strided) {
  TORCH_CHECK(t.defined(), "flashcore::", op, ": ", name, " is undefined");
  TORCH_CHECK(t.is_cuda(), "flashcore::", op, ": ", name, " must be a CUDA tensor, got device ", t.device());
  TORCH_CHECK(t.device() == q.device(), "flashcore::", op, ": q, k and v must be on the same device, got q on ",
              q.device(), " and ", name, " on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16, "flashcore::", op, ": ", name,
              " has dtype ", t.scalar_type(), ": allowed float16, bfloat16");
  TORCH_CHECK(t.scalar_type() == q.scalar_type(), "flashcore::", op, ": q, k and v must have one dtype, got q ",
              q.scalar_type(), " and ", name, " ", t.scalar_type());
  TORCH_CHECK(t.dim() == 4, "flashcore::", op, ": ", name, " must have rank 4 ([batch, seqlen, heads, head_dim]), got ",
              num(t.dim()), " dims with shape ", dims(t.sizes()));
  if (strided) {
    TORCH_CHECK(t.stride(3) == 1 || t.size(3) == 1, "flashcore::", op, ": ", name,
                " must have a contiguous last dimension (head_dim stride 1), got strides ", dims(t.strides()),
                " for shape ", dims(t.sizes()), "; call .contiguous()");
  } else {
    TORCH_CHECK(t.is_contiguous(), "flashcore::", op, ": ", name,
                " must be contiguous [batch, seqlen, heads, head_dim] (bshd), got strides ", dims(t.strides()),
                " for shape ", dims(t.sizes()), "; call .contiguous()");
  }
  for (int d = 0; d < 4; ++d)
    TORCH_CHECK(t.size(d) >= 1 && t.size(d) <= INT_MAX, "flashcore::", op, ": ", name, " has shape ", dims(t.sizes()),
                ": every dimension must be in [1, ", num(int64_t{INT_MAX}), "]");
}

flashcore::Strides strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

// The tile counter of the dynamic schedules (AttnParams::tile_counter): zero before a launch, left zero by
// it, and never used by two launches at once. One per (device, stream): launches on one stream run in
// order. Made once (a zeroing on that stream, ordered before the launch) and kept for the process; not
// made while the stream is being captured into a CUDA graph (it would live in the graph's memory pool):
// null then: a "dyn" variant fails and says so; the default picks a schedule without a counter.
int* tile_counter(const at::Tensor& like, cudaStream_t stream) {
  static std::mutex mu;
  static auto* counters = new std::map<std::pair<int, cudaStream_t>, at::Tensor>();  // never freed
  const std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_pair(static_cast<int>(like.get_device()), stream);
  auto it = counters->find(key);
  if (it == counters->end()) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &capturing) != cudaSuccess || capturing != cudaStreamCaptureStatusNone)
      return nullptr;
    it = counters->emplace(key, at::zeros({1}, like.options().dtype(at::kInt))).first;
  }
  return it->second.data_ptr<int>();
}

// What an op's kernel takes beyond contiguous q/k/v: strided inputs, a tile counter (its dynamic schedules).
struct OpTraits {
  bool strided;
  bool tile_counter;
};

std::tuple<at::Tensor, at::Tensor> run_op(const char* op, LaunchFn launch, SupportsFn supports, OpTraits traits,
                                          const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                          double softmax_scale, bool causal, bool return_lse) {
  check_tensor(op, "q", q, q, traits.strided);
  check_tensor(op, "k", k, q, traits.strided);
  check_tensor(op, "v", v, q, traits.strided);
  TORCH_CHECK(k.sizes() == v.sizes(), "flashcore::", op, ": k and v must have one shape, got k ", dims(k.sizes()), " and v ",
              dims(v.sizes()));
  TORCH_CHECK(k.size(0) == q.size(0), "flashcore::", op, ": batch of k (", num(k.size(0)), ") differs from q (",
              num(q.size(0)), ")");
  TORCH_CHECK(k.size(3) == q.size(3), "flashcore::", op, ": head_dim of k (", num(k.size(3)), ") differs from q (",
              num(q.size(3)), ")");
  TORCH_CHECK(q.size(2) % k.size(2) == 0, "flashcore::", op, ": heads_q=", num(q.size(2)),
              " is not a multiple of heads_kv=", num(k.size(2)), " (grouped-query attention needs heads_q % heads_kv == 0)");
  TORCH_CHECK(std::isfinite(softmax_scale), "flashcore::", op, ": softmax_scale must be finite, got ", num(softmax_scale));

  const c10::cuda::CUDAGuard guard(q.device());
  // O is contiguous [b, sq, hq, d] whatever q's strides (empty_like would copy a transposed q's layout)
  at::Tensor o = at::empty(q.sizes(), q.options());
  const auto f32 = q.options().dtype(at::kFloat);
  at::Tensor lse = return_lse ? at::empty({q.size(0), q.size(2), q.size(1)}, f32) : at::empty({0}, f32);

  flashcore::AttnParams p{};
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.o = o.data_ptr();
  p.lse = return_lse ? lse.data_ptr<float>() : nullptr;
  p.batch = static_cast<int>(q.size(0));
  p.seqlen_q = static_cast<int>(q.size(1));
  p.heads_q = static_cast<int>(q.size(2));
  p.head_dim = static_cast<int>(q.size(3));
  p.seqlen_k = static_cast<int>(k.size(1));
  p.heads_kv = static_cast<int>(k.size(2));
  p.softmax_scale = static_cast<float>(softmax_scale);
  p.causal = causal;
  p.dtype = q.scalar_type() == at::kBFloat16 ? flashcore::DType::kBFloat16 : flashcore::DType::kFloat16;
  p.q_stride = strides_of(q);
  p.k_stride = strides_of(k);
  p.v_stride = strides_of(v);
  p.o_stride = strides_of(o);

  if (const char* why = supports(p)) TORCH_CHECK(false, "flashcore::", op, ": ", why);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  if (traits.tile_counter) p.tile_counter = tile_counter(q, stream);
  const cudaError_t err = launch(p, stream);
  TORCH_CHECK(err == cudaSuccess, "flashcore::", op, ": kernel launch failed: ", cudaGetErrorName(err), " (",
              cudaGetErrorString(err), ")");
  return {o, lse};
}

std::tuple<at::Tensor, at::Tensor> phase4(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                          double softmax_scale, bool causal, bool return_lse) {
  return run_op("phase4", flashcore::launch_phase4, flashcore::supports_phase4, {false, false}, q, k, v, softmax_scale, causal,
                return_lse);
}

std::tuple<at::Tensor, at::Tensor> phase4x(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                           double softmax_scale, bool causal, bool return_lse) {
  return run_op("phase4x", flashcore::launch_phase4x, flashcore::supports_phase4x, {false, false}, q, k, v, softmax_scale, causal,
                return_lse);
}

#ifdef FLASHCORE_HAS_BLEEDING_EDGE
std::tuple<at::Tensor, at::Tensor> bleeding_edge(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                 double softmax_scale, bool causal, bool return_lse) {
  return run_op("bleeding_edge", flashcore::launch_bleeding_edge, flashcore::supports_bleeding_edge, {true, true}, q, k, v,
                softmax_scale, causal, return_lse);
}
#endif

}  // namespace

#define FLASHCORE_SCHEMA "(Tensor q, Tensor k, Tensor v, float softmax_scale, bool causal, bool return_lse) -> (Tensor, Tensor)"

TORCH_LIBRARY(flashcore, m) {
  m.def("phase4" FLASHCORE_SCHEMA);
  m.def("phase4x" FLASHCORE_SCHEMA);
#ifdef FLASHCORE_HAS_BLEEDING_EDGE
  m.def("bleeding_edge" FLASHCORE_SCHEMA);
#endif
}

TORCH_LIBRARY_IMPL(flashcore, CUDA, m) {
  m.impl("phase4", &phase4);
  m.impl("phase4x", &phase4x);
#ifdef FLASHCORE_HAS_BLEEDING_EDGE
  m.impl("bleeding_edge", &bleeding_edge);
#endif
}

// CPU tensors reach these (not the dispatcher's "could not run ... with arguments from the CPU backend"),
// so the error names the device rule.
TORCH_LIBRARY_IMPL(flashcore, CPU, m) {
  m.impl("phase4", &phase4);
  m.impl("phase4x", &phase4x);
#ifdef FLASHCORE_HAS_BLEEDING_EDGE
  m.impl("bleeding_edge", &bleeding_edge);
#endif
}
