// Autocast kernels of aten::correlation for the preview build.
//
// Upstream, correlation is one entry of the lower-precision list where conv2d
// stands:
//
//   aten/src/ATen/autocast_mode.h:
//     #define AT_FORALL_LOWER_PRECISION_FP(_) ... _(conv2d) ... _(correlation)
//     ...
//   aten/src/ATen/autocast_mode.cpp: every backend that expands that list,
//     TORCH_LIBRARY_IMPL(aten, Autocast, m)     (CUDA)  KERNEL_CUDA(op,
//     lower_precision_fp) TORCH_LIBRARY_IMPL(aten, AutocastXPU, m)
//     KERNEL_XPU(op, lower_precision_fp)
//   and the AutocastCPU list, which is written out by hand and has conv2d
//   too: KERNEL_CPU(correlation, lower_precision_fp).
//
// The preview cannot edit torch's lists, so it registers what those entries
// expand to, with the same macros, from its own library. Under autocast both
// inputs are cast to the autocast dtype (float16 on CUDA, bfloat16 by default
// on CPU) and the kernel runs in it, accumulating in float32; the output has
// the autocast dtype. Like every lower_precision_fp op, float64 inputs are
// left alone. correlation_backward needs no entry: autograd runs it on the
// dtypes the forward saw.

#include <ATen/autocast_mode.h>
#include <ATen/ops/correlation_ops.h>
#include <torch/library.h>

namespace at::autocast {
namespace {

// The entry the patch adds to AT_FORALL_LOWER_PRECISION_FP.
#define CORRELATION_LOWER_PRECISION_FP(_) _(correlation)

TORCH_LIBRARY_IMPL(aten, Autocast, m){
#define _KERNEL_CUDA_LOW_PRECISION_FP(...) \
  KERNEL_CUDA(__VA_ARGS__, lower_precision_fp)
    CORRELATION_LOWER_PRECISION_FP(_KERNEL_CUDA_LOW_PRECISION_FP)
#undef _KERNEL_CUDA_LOW_PRECISION_FP
}

TORCH_LIBRARY_IMPL(aten, AutocastXPU, m){
#define _KERNEL_XPU_LOW_PRECISION_FP(...) \
  KERNEL_XPU(__VA_ARGS__, lower_precision_fp)
    CORRELATION_LOWER_PRECISION_FP(_KERNEL_XPU_LOW_PRECISION_FP)
#undef _KERNEL_XPU_LOW_PRECISION_FP
}

TORCH_LIBRARY_IMPL(aten, AutocastCPU, m) {
  KERNEL_CPU(correlation, lower_precision_fp)
}

#undef CORRELATION_LOWER_PRECISION_FP

}  // namespace
}  // namespace at::autocast
