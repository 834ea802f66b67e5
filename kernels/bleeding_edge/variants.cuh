// Internal entry points of the bleeding-edge kernel for the standalone driver (kernels/tools/attn_check.cu):
// a launch with an explicit tile variant, and the variants' names. Not part of the public API.
#pragma once
#include <cuda_runtime.h>
#include "flashcore/api.h"

namespace flashcore { namespace be {

// variant < 0: the default choice of launch_bleeding_edge. Otherwise an index into the table of
// variants for the problem's head_dim (see variant_name); cudaErrorInvalidValue if out of range.
cudaError_t launch_variant(const AttnParams& p, cudaStream_t stream, int variant);
// Name of variant v for head_dim d, or nullptr if there is none.
const char* variant_name(int head_dim, int v);
// The variant a launch with variant v runs for problem p (v < 0: the per-problem default).
int resolve_variant(const AttnParams& p, int v);

}}  // namespace flashcore::be
