// vmap batching rules of correlation and correlation_backward.
//
// The operator already has a batch dimension, so every rule folds the vmapped
// dimension B into it (as grid_sample's rule does when both of its inputs
// are batched, BatchRulesModules.cpp):
//
//   logical (C, H, W):     (B, C, H, W) is an ordinary batched call;
//   logical (N, C, H, W):  (B, N, C, H, W) -> (B * N, C, H, W), and each
//                          result is unfolded back to (B, N, ...).
//
// An argument that is not vmapped is expanded to B first (the optional
// offset, when present, like the inputs) (a view; folding an
// expanded (N, C, H, W) argument copies it). Every result has its vmapped
// dimension in front. The kernels are then called once for the whole vmap,
// instead of once per sample as the fallback would.

#include <ATen/functorch/BatchRulesHelper.h>
#include <ATen/functorch/PlumbingHelper.h>

namespace at::functorch {

namespace {

// `tensor` with its vmapped dimension in front, expanded to `batch_size` if
// it is not vmapped.
Tensor batch_dim_first(
    const Tensor& tensor,
    std::optional<int64_t> bdim,
    const c10::SymInt& batch_size) {
  if (bdim.has_value()) {
    return tensor.movedim(*bdim, 0);
  }
  return ensure_has_bdim(tensor, false, batch_size);
}

// The vmapped size B, from the first of the tensors that is vmapped.
c10::SymInt vmap_size(
    std::initializer_list<std::pair<const Tensor*, std::optional<int64_t>>>
        tensors) {
  for (const auto& [tensor, bdim] : tensors) {
    if (tensor->defined() && bdim.has_value()) {
      return tensor->sym_size(*bdim);
    }
  }
  TORCH_INTERNAL_ASSERT(false, "correlation: no vmapped argument");
}

// The optional offset, vmapped dimension in front and folded like the
// inputs; undefined when absent.
Tensor batch_offset(
    const std::optional<Tensor>& offset,
    std::optional<int64_t> offset_bdim,
    const c10::SymInt& batch_size,
    bool fold) {
  if (!offset.has_value() || !offset->defined()) {
    return Tensor();
  }
  auto offset_ = batch_dim_first(*offset, offset_bdim, batch_size);
  return fold ? reshape_dim_into(0, 0, offset_) : offset_;
}

// Whether the per-sample tensor is batched (N, C, H, W). Any other rank than
// 3 or 4 fails with the operator's own message about the per-sample sizes.
bool sample_is_batched(const Tensor& input1) {
  const auto rank = input1.dim() - 1;
  TORCH_CHECK(
      rank == 3 || rank == 4,
      "correlation(): expected input1 to be a 3D (C, H, W) or 4D (N, C, H, W) "
      "tensor, but got input1 with sizes ",
      input1.sym_sizes().slice(1));
  return rank == 4;
}

std::tuple<Tensor, std::optional<int64_t>> correlation_batch_rule(
    const Tensor& input1,
    std::optional<int64_t> input1_bdim,
    const Tensor& input2,
    std::optional<int64_t> input2_bdim,
    IntArrayRef max_displacement,
    const std::optional<Tensor>& offset,
    std::optional<int64_t> offset_bdim,
    at::OptionalIntArrayRef min_displacement,
    IntArrayRef kernel_size,
    IntArrayRef stride,
    IntArrayRef padding,
    IntArrayRef dilation,
    IntArrayRef displacement_stride,
    int64_t groups,
    double scale) {
  const Tensor no_offset;
  const auto batch_size = vmap_size(
      {{&input1, input1_bdim},
       {&input2, input2_bdim},
       {offset.has_value() ? &*offset : &no_offset, offset_bdim}});
  auto input1_ = batch_dim_first(input1, input1_bdim, batch_size);
  auto input2_ = batch_dim_first(input2, input2_bdim, batch_size);
  const bool fold = sample_is_batched(input1_);
  if (fold) {
    input1_ = reshape_dim_into(0, 0, input1_);
    input2_ = reshape_dim_into(0, 0, input2_);
  }
  const auto offset_ = batch_offset(offset, offset_bdim, batch_size, fold);
  auto output = at::correlation(
      input1_,
      input2_,
      max_displacement,
      offset_,
      min_displacement,
      kernel_size,
      stride,
      padding,
      dilation,
      displacement_stride,
      groups,
      scale);
  if (fold) {
    output = reshape_dim_outof_symint(0, batch_size, output);
  }
  return std::make_tuple(std::move(output), 0);
}

std::tuple<
    Tensor,
    std::optional<int64_t>,
    Tensor,
    std::optional<int64_t>,
    Tensor,
    std::optional<int64_t>>
correlation_backward_batch_rule(
    const Tensor& grad_output,
    std::optional<int64_t> grad_output_bdim,
    const Tensor& input1,
    std::optional<int64_t> input1_bdim,
    const Tensor& input2,
    std::optional<int64_t> input2_bdim,
    const std::optional<Tensor>& offset,
    std::optional<int64_t> offset_bdim,
    IntArrayRef max_displacement,
    at::OptionalIntArrayRef min_displacement,
    IntArrayRef kernel_size,
    IntArrayRef stride,
    IntArrayRef padding,
    IntArrayRef dilation,
    IntArrayRef displacement_stride,
    int64_t groups,
    double scale,
    std::array<bool, 3> output_mask) {
  const Tensor no_offset;
  const auto batch_size = vmap_size(
      {{&grad_output, grad_output_bdim},
       {&input1, input1_bdim},
       {&input2, input2_bdim},
       {offset.has_value() ? &*offset : &no_offset, offset_bdim}});
  auto grad_output_ =
      batch_dim_first(grad_output, grad_output_bdim, batch_size);
  auto input1_ = batch_dim_first(input1, input1_bdim, batch_size);
  auto input2_ = batch_dim_first(input2, input2_bdim, batch_size);
  const bool fold = sample_is_batched(input1_);
  if (fold) {
    grad_output_ = reshape_dim_into(0, 0, grad_output_);
    input1_ = reshape_dim_into(0, 0, input1_);
    input2_ = reshape_dim_into(0, 0, input2_);
  }
  const auto offset_ = batch_offset(offset, offset_bdim, batch_size, fold);
  auto [grad_input1, grad_input2, grad_offset] = at::correlation_backward(
      grad_output_,
      input1_,
      input2_,
      offset_,
      max_displacement,
      min_displacement,
      kernel_size,
      stride,
      padding,
      dilation,
      displacement_stride,
      groups,
      scale,
      output_mask);
  // A gradient left out by output_mask stays undefined and unbatched.
  auto unfold = [&](Tensor grad) -> std::tuple<Tensor, std::optional<int64_t>> {
    if (!grad.defined()) {
      return std::make_tuple(std::move(grad), std::nullopt);
    }
    if (fold) {
      grad = reshape_dim_outof_symint(0, batch_size, grad);
    }
    return std::make_tuple(std::move(grad), 0);
  };
  auto [grad1, grad1_bdim] = unfold(std::move(grad_input1));
  auto [grad2, grad2_bdim] = unfold(std::move(grad_input2));
  auto [grad3, grad3_bdim] = unfold(std::move(grad_offset));
  return std::make_tuple(
      std::move(grad1),
      grad1_bdim,
      std::move(grad2),
      grad2_bdim,
      std::move(grad3),
      grad3_bdim);
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, FuncTorchBatched, m) {
  VMAP_SUPPORT(correlation, correlation_batch_rule);
  VMAP_SUPPORT(correlation_backward, correlation_backward_batch_rule);
}

}  // namespace at::functorch
