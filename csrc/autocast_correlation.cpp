// Autocast kernels of aten::correlation for the preview build.
//
// Upstream, correlation is listed next to conv2d in the lower_precision_fp
// lists of aten/src/ATen/autocast_mode.cpp:
//
//   TORCH_LIBRARY_IMPL(aten, AutocastCUDA, m) {
//     ... KERNEL_CUDA(correlation, lower_precision_fp) ...
//   TORCH_LIBRARY_IMPL(aten, AutocastCPU, m) {
//     ... KERNEL_CPU(correlation, lower_precision_fp) ...
//
// (and likewise for the other autocast backends' lists). The preview cannot
// edit torch's lists, so it registers the same entries, with the same macros,
// from its own library. Under autocast both inputs are cast to the autocast
// dtype (float16 on CUDA, bfloat16 by default on CPU) and the kernel runs in
// it, accumulating in float32; the output has the autocast dtype. Like every
// lower_precision_fp op, float64 inputs are left alone. correlation_backward
// needs no entry: autograd runs it on the dtypes the forward saw.

#include <ATen/autocast_mode.h>
#include <ATen/ops/correlation_ops.h>
#include <torch/library.h>

namespace at::autocast {
namespace {

TORCH_LIBRARY_IMPL(aten, AutocastCUDA, m) {
  KERNEL_CUDA(correlation, lower_precision_fp)
}

TORCH_LIBRARY_IMPL(aten, AutocastCPU, m) {
  KERNEL_CPU(correlation, lower_precision_fp)
}

} // namespace
} // namespace at::autocast
