// Definitions that the generated vmap plumbing (VmapGeneratedPlumbing.h, used
// by aten_functorch/) calls and that an in-tree build links from
// libtorch_cpu, where they are internal (not exported from the wheel's shared
// libraries). The preview defines them here, with hidden visibility.

#include <ATen/functorch/PlumbingHelper.h>

namespace at::functorch {

// Every batching rule's plumbing runs under vmap's dynamic layer; without one,
// a BatchedTensor has outlived the vmap that created it.
void vmap_check_escaped(
    const std::optional<DynamicLayer>& layer,
    const char* what) {
  TORCH_CHECK(
      layer.has_value(),
      "vmap: a batched tensor was used outside the vmap that created it (in ",
      what,
      "); return it from the vmapped function instead of storing it");
}

}  // namespace at::functorch
