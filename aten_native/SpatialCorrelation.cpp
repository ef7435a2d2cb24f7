#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/core/Tensor.h>
#include <ATen/native/SpatialCorrelationUtils.h>
#include <ATen/native/cpu/SpatialCorrelationKernel.h>

#ifndef AT_PER_OPERATOR_HEADERS
#include <ATen/Functions.h>
#include <ATen/NativeFunctions.h>
#else
#include <ATen/ops/correlation_backward_native.h>
#include <ATen/ops/correlation_native.h>
#include <ATen/ops/empty.h>
#endif

#include <limits>

// NOTE [ correlation Native Functions ]
//
// correlation(input1, input2, ...) is the cost volume of optical flow and
// stereo networks (FlowNetC, PWC-Net, DispNetC, GwcNet):
//
//   out[n, g*D + a*Kx + b, oy, ox] = scale * sum_{c in group g} sum_{i, j}
//       input1[n, c, y0 + i*dil_h,        x0 + j*dil_w]
//     * input2[n, c, y0 + i*dil_h + dy_a, x0 + j*dil_w + dx_b]
//
// with y0 = oy*stride_h - pad_h, x0 = ox*stride_w - pad_w and zeros outside
// the image; dy_a and dx_b are the a-th and b-th displacements in output
// order, which descends along an axis whose displacement_stride is negative
// (CorrelationParams::displacement_channel).
//
// With an offset (N, 2, H_out, W_out), input2 is read at the position moved
// by (u, v) = offset[n, :, oy, ox], in its own pixel grid, with bilinear
// interpolation whose taps outside the image read zero (grid_sample's
// bilinear mode with zeros padding and align_corners=True):
//
//   input2[n, c, y0 + i*dil_h + dy_a + v, x0 + j*dil_w + dx_b + u]
//
// input2 may then have another height and width than input1 (RAFT samples
// coarser pyramid levels of input2 at input1's positions). The fractional
// part of (u, v) is the same for every displacement and kernel tap of an
// output location, so every sample of it shares the four bilinear weights:
// the kernels (correlation_offset_stub) compute integer-position dot
// products on a grid one row and column wider than the displacement window
// and mix them with those weights. A non-finite offset component makes the
// location's outputs NaN (there is no position to sample). The geometry
// (displacement ranges, output size) is derived once in correlation_params()
// (SpatialCorrelationUtils.h), which every backend calls.
//
// One entry point serves CPU and CUDA: it checks, allocates and calls the
// device's kernel (the integer or the offset one) through a DispatchStub
// (cpu/SpatialCorrelationKernel.cpp, cuda/SpatialCorrelation.cu). The Meta
// kernels (FakeTensor, torch.compile, export) run the same checks,
// check_correlation(), on concrete or symbolic sizes and allocate the same
// outputs without computing them. Kernels take batched 4D tensors with
// arbitrary strides; the unbatched (C, H, W) form is handled here with a view.
// The backward is a gather over the outputs that touch each input element, so
// it is deterministic on every backend.

namespace at::native {

DEFINE_DISPATCH(correlation_stub);
DEFINE_DISPATCH(correlation_backward_stub);
DEFINE_DISPATCH(correlation_offset_stub);
DEFINE_DISPATCH(correlation_offset_backward_stub);

namespace {

// Batched 4D view of a 3D or 4D tensor.
TensorBase as_batched(const Tensor& t) {
  return t.dim() == 4 ? t : t.unsqueeze(0);
}

// The optional tensor, undefined when absent.
const Tensor& offset_or_undefined(const std::optional<Tensor>& offset) {
  static const Tensor undefined;
  return offset.has_value() ? *offset : undefined;
}

// The output follows input1's memory format (channels_last in,
// channels_last out), like conv2d's.
Tensor empty_output(const Tensor& input1, const CorrelationChecked& checked) {
  return at::empty_symint(
      checked.output_sizes, input1.options(), input1.suggest_memory_format());
}

// Gradients follow the layout of the tensor they belong to, as conv2d's do.
Tensor empty_like_input(const Tensor& input) {
  return at::empty_symint(
      input.sym_sizes(), input.options(), input.suggest_memory_format());
}

// The gradients correlation_backward returns, allocated: those output_mask
// leaves out are undefined, and so is the offset's without an offset,
// whatever the mask says. The real and the Meta kernels both allocate here,
// so that they return the same outputs.
std::tuple<Tensor, Tensor, Tensor> empty_gradients(
    const Tensor& input1,
    const Tensor& input2,
    const Tensor& offset,
    std::array<bool, 3> output_mask) {
  return std::make_tuple(
      output_mask[0] ? empty_like_input(input1) : Tensor(),
      output_mask[1] ? empty_like_input(input2) : Tensor(),
      output_mask[2] && offset.defined() ? empty_like_input(offset) : Tensor());
}

}  // namespace

Tensor correlation(
    const Tensor& input1,
    const Tensor& input2,
    IntArrayRef max_displacement,
    const std::optional<Tensor>& offset_opt,
    at::OptionalIntArrayRef min_displacement,
    IntArrayRef kernel_size,
    IntArrayRef stride,
    IntArrayRef padding,
    IntArrayRef dilation,
    IntArrayRef displacement_stride,
    int64_t groups,
    double scale) {
  const Tensor& offset = offset_or_undefined(offset_opt);
  const auto checked = check_correlation(
      input1,
      input2,
      offset,
      max_displacement,
      min_displacement,
      kernel_size,
      stride,
      padding,
      dilation,
      displacement_stride,
      groups,
      scale);
  auto output = empty_output(input1, checked);
  if (output.numel() == 0) {
    return output;
  }
  const auto params = correlation_params(input1, input2, checked);
  if (offset.defined()) {
    correlation_offset_stub(
        input1.device().type(),
        as_batched(output),
        as_batched(input1),
        as_batched(input2),
        as_batched(offset),
        params);
  } else {
    correlation_stub(
        input1.device().type(),
        as_batched(output),
        as_batched(input1),
        as_batched(input2),
        params);
  }
  return output;
}

Tensor correlation_meta(
    const Tensor& input1,
    const Tensor& input2,
    IntArrayRef max_displacement,
    const std::optional<Tensor>& offset_opt,
    at::OptionalIntArrayRef min_displacement,
    IntArrayRef kernel_size,
    IntArrayRef stride,
    IntArrayRef padding,
    IntArrayRef dilation,
    IntArrayRef displacement_stride,
    int64_t groups,
    double scale) {
  const auto checked = check_correlation(
      input1,
      input2,
      offset_or_undefined(offset_opt),
      max_displacement,
      min_displacement,
      kernel_size,
      stride,
      padding,
      dilation,
      displacement_stride,
      groups,
      scale);
  return empty_output(input1, checked);
}

std::tuple<Tensor, Tensor, Tensor> correlation_backward(
    const Tensor& grad_output,
    const Tensor& input1,
    const Tensor& input2,
    const std::optional<Tensor>& offset_opt,
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
  const Tensor& offset = offset_or_undefined(offset_opt);
  const auto checked = check_correlation(
      input1,
      input2,
      offset,
      max_displacement,
      min_displacement,
      kernel_size,
      stride,
      padding,
      dilation,
      displacement_stride,
      groups,
      scale);
  check_correlation_grad_output(grad_output, input1, checked.output_sizes);

  auto [grad_input1, grad_input2, grad_offset] =
      empty_gradients(input1, input2, offset, output_mask);
  if (!grad_input1.defined() && !grad_input2.defined() &&
      !grad_offset.defined()) {
    return std::make_tuple(grad_input1, grad_input2, grad_offset);
  }
  if (grad_output.numel() == 0 || input1.numel() == 0 || input2.numel() == 0) {
    // Nothing to gather (an empty output, or an empty input, which makes
    // the output zero where the offset is finite and NaN where it is not):
    // the gradients are empty or zero, and NaN at non-finite offsets.
    for (Tensor* grad : {&grad_input1, &grad_input2, &grad_offset}) {
      if (grad->defined()) {
        grad->zero_();
      }
    }
    if (grad_offset.defined()) {
      grad_offset.masked_fill_(
          offset.isfinite().all(-3, /*keepdim=*/true).logical_not(),
          std::numeric_limits<double>::quiet_NaN());
    }
    return std::make_tuple(grad_input1, grad_input2, grad_offset);
  }
  const TensorBase undefined;
  const auto batched_or_undefined = [&](const Tensor& t) {
    return t.defined() ? as_batched(t) : undefined;
  };
  const auto params = correlation_params(input1, input2, checked);
  if (offset.defined()) {
    correlation_offset_backward_stub(
        input1.device().type(),
        batched_or_undefined(grad_input1),
        batched_or_undefined(grad_input2),
        batched_or_undefined(grad_offset),
        as_batched(grad_output),
        as_batched(input1),
        as_batched(input2),
        as_batched(offset),
        params);
  } else {
    correlation_backward_stub(
        input1.device().type(),
        batched_or_undefined(grad_input1),
        batched_or_undefined(grad_input2),
        as_batched(grad_output),
        as_batched(input1),
        as_batched(input2),
        params);
  }
  return std::make_tuple(grad_input1, grad_input2, grad_offset);
}

std::tuple<Tensor, Tensor, Tensor> correlation_backward_meta(
    const Tensor& grad_output,
    const Tensor& input1,
    const Tensor& input2,
    const std::optional<Tensor>& offset_opt,
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
  const Tensor& offset = offset_or_undefined(offset_opt);
  const auto checked = check_correlation(
      input1,
      input2,
      offset,
      max_displacement,
      min_displacement,
      kernel_size,
      stride,
      padding,
      dilation,
      displacement_stride,
      groups,
      scale);
  check_correlation_grad_output(grad_output, input1, checked.output_sizes);
  return empty_gradients(input1, input2, offset, output_mask);
}

}  // namespace at::native
