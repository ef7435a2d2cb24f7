// STUB (tools/check_patch_stubs/): the wheel does not ship autocast_mode.cpp.
// The AutocastCPU list the patch adds to, trimmed, in upstream's layout.
#include <ATen/autocast_mode.h>

namespace at::autocast {
namespace {

TORCH_LIBRARY_IMPL(aten, AutocastCPU, m) {
  // lower_precision_fp cast policy
  KERNEL_CPU(conv1d, lower_precision_fp)
  KERNEL_CPU(conv1d, padding, lower_precision_fp)
  KERNEL_CPU(conv2d, lower_precision_fp)
  KERNEL_CPU(conv2d, padding, lower_precision_fp)
  KERNEL_CPU(conv3d, lower_precision_fp)
  KERNEL_CPU(mm, lower_precision_fp)
}

} // namespace
} // namespace at::autocast
