#pragma once

// Argument checks and the derived geometry of correlation, shared by every
// backend (CPU, CUDA, Meta) and by both the forward and the backward.
// See NOTE [ correlation Native Functions ] in SpatialCorrelation.cpp.
//
// The helpers take TensorBase so that .cu files can include this header.

#include <ATen/core/TensorBase.h>
#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>
#include <c10/util/OptionalArrayRef.h>
#include <c10/util/irange.h>

#include <array>
#include <cstdint>

namespace at::native {

// Everything a kernel needs to know about one correlation call, derived once
// from the user's arguments by correlation_params().
//
// The displacements along each axis form the arithmetic progression
//   disp_min_h + a * disp_step_h,  a in [0, disp_count_h)
// (likewise w); output channel g * D + a * disp_count_w + b holds group g,
// vertical displacement number a and horizontal displacement number b.
struct CorrelationParams {
  int64_t batch = 0;
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t disp_min_h = 0, disp_min_w = 0;
  int64_t disp_step_h = 1, disp_step_w = 1;
  int64_t disp_count_h = 1, disp_count_w = 1;
  int64_t groups = 1;
  double scale = 1.0;
  int64_t out_h = 0, out_w = 0;

  int64_t channels_per_group() const { return channels / groups; }
  int64_t displacements() const { return disp_count_h * disp_count_w; }
  int64_t out_channels() const { return groups * displacements(); }
  int64_t disp_max_h() const { return disp_min_h + (disp_count_h - 1) * disp_step_h; }
  int64_t disp_max_w() const { return disp_min_w + (disp_count_w - 1) * disp_step_w; }
};

namespace correlation_detail {

// Reads an `int[2]` schema argument. The Python binding expands a single int
// to a pair, but C++ callers may pass one element, so accept both.
inline std::array<int64_t, 2> expand_pair(IntArrayRef value, const char* name) {
  TORCH_CHECK(
      value.size() == 1 || value.size() == 2,
      "correlation(): expected ", name, " to be a single int or a pair of ints, "
      "but got ", value.size(), " values: ", value);
  return value.size() == 1 ? std::array<int64_t, 2>{value[0], value[0]}
                           : std::array<int64_t, 2>{value[0], value[1]};
}

inline void check_positive_pair(const std::array<int64_t, 2>& value, const char* name) {
  TORCH_CHECK(
      value[0] >= 1 && value[1] >= 1,
      "correlation(): expected ", name, " to be positive, but got ", name, "=(",
      value[0], ", ", value[1], ")");
}

// Number of sliding-window positions along one axis (conv2d's formula).
inline int64_t window_count(
    int64_t size, int64_t pad, int64_t dilation, int64_t kernel, int64_t stride) {
  const int64_t span = size + 2 * pad - dilation * (kernel - 1) - 1;
  // Floor division for a possibly negative span, so that a window that does
  // not fit yields a count below 1 instead of rounding up to 1.
  return (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;
}

} // namespace correlation_detail

inline void check_correlation_inputs(const TensorBase& input1, const TensorBase& input2) {
  TORCH_CHECK(input1.defined() && input2.defined(),
      "correlation(): expected input1 and input2 to be defined");
  TORCH_CHECK(
      input1.layout() == kStrided && input2.layout() == kStrided,
      "correlation(): expected input1 and input2 to have torch.strided layout, "
      "but input1 has ", input1.layout(), " and input2 has ", input2.layout());
  TORCH_CHECK(
      input1.dim() == 3 || input1.dim() == 4,
      "correlation(): expected input1 to be a 3D (C, H, W) or 4D (N, C, H, W) "
      "tensor, but got input1 with sizes ", input1.sizes());
  TORCH_CHECK(
      input1.sizes() == input2.sizes(),
      "correlation(): expected input1 and input2 to have the same shape, but got "
      "input1 with sizes ", input1.sizes(), " and input2 with sizes ", input2.sizes());
  TORCH_CHECK(
      input1.device() == input2.device(),
      "correlation(): expected input1 and input2 to be on the same device, but "
      "input1 is on ", input1.device(), " and input2 is on ", input2.device());
  TORCH_CHECK(
      input1.scalar_type() == input2.scalar_type(),
      "correlation(): expected input1 and input2 to have the same dtype, but "
      "input1 has ", input1.scalar_type(), " and input2 has ", input2.scalar_type());
  TORCH_CHECK(
      at::isFloatingType(input1.scalar_type()),
      "correlation(): expected a floating point dtype (float64, float32, float16 "
      "or bfloat16), but got ", input1.scalar_type());
}

// Checks every argument and derives the geometry. `input1` may be batched
// (4D) or unbatched (3D); the returned batch is 1 for the latter.
inline CorrelationParams correlation_params(
    const TensorBase& input1,
    const TensorBase& input2,
    IntArrayRef max_displacement,
    at::OptionalIntArrayRef min_displacement,
    IntArrayRef kernel_size,
    IntArrayRef stride,
    IntArrayRef padding,
    IntArrayRef dilation,
    IntArrayRef displacement_stride,
    int64_t groups,
    double scale) {
  using namespace correlation_detail;
  check_correlation_inputs(input1, input2);

  const auto max_disp = expand_pair(max_displacement, "max_displacement");
  const auto kernel = expand_pair(kernel_size, "kernel_size");
  const auto strides = expand_pair(stride, "stride");
  const auto pads = expand_pair(padding, "padding");
  const auto dilations = expand_pair(dilation, "dilation");
  const auto disp_steps = expand_pair(displacement_stride, "displacement_stride");
  check_positive_pair(kernel, "kernel_size");
  check_positive_pair(strides, "stride");
  check_positive_pair(dilations, "dilation");
  check_positive_pair(disp_steps, "displacement_stride");
  TORCH_CHECK(
      pads[0] >= 0 && pads[1] >= 0,
      "correlation(): expected padding to be non-negative, but got padding=(",
      pads[0], ", ", pads[1], ")");
  TORCH_CHECK(groups >= 1,
      "correlation(): expected groups to be positive, but got groups=", groups);

  CorrelationParams p;
  const bool batched = input1.dim() == 4;
  p.batch = batched ? input1.size(0) : 1;
  p.channels = input1.size(batched ? 1 : 0);
  p.height = input1.size(batched ? 2 : 1);
  p.width = input1.size(batched ? 3 : 2);
  TORCH_CHECK(
      p.channels % groups == 0,
      "correlation(): expected the number of channels (", p.channels,
      ") to be divisible by groups (", groups, ")");

  std::array<int64_t, 2> disp_min{};
  std::array<int64_t, 2> disp_count{};
  if (min_displacement.has_value()) {
    const auto min_disp = expand_pair(*min_displacement, "min_displacement");
    for (const auto axis : c10::irange(2)) {
      TORCH_CHECK(
          min_disp[axis] <= max_disp[axis],
          "correlation(): expected min_displacement <= max_displacement, but got "
          "min_displacement=(", min_disp[0], ", ", min_disp[1],
          ") and max_displacement=(", max_disp[0], ", ", max_disp[1], ")");
      disp_min[axis] = min_disp[axis];
      disp_count[axis] = (max_disp[axis] - min_disp[axis]) / disp_steps[axis] + 1;
    }
  } else {
    for (const auto axis : c10::irange(2)) {
      TORCH_CHECK(
          max_disp[axis] >= 0,
          "correlation(): expected max_displacement to be non-negative when "
          "min_displacement is None, but got max_displacement=(",
          max_disp[0], ", ", max_disp[1], ")");
      // Symmetric range of multiples of the step: {k * s : |k * s| <= max}.
      const int64_t half = max_disp[axis] / disp_steps[axis];
      disp_min[axis] = -half * disp_steps[axis];
      disp_count[axis] = 2 * half + 1;
    }
  }

  p.kernel_h = kernel[0];
  p.kernel_w = kernel[1];
  p.stride_h = strides[0];
  p.stride_w = strides[1];
  p.pad_h = pads[0];
  p.pad_w = pads[1];
  p.dilation_h = dilations[0];
  p.dilation_w = dilations[1];
  p.disp_min_h = disp_min[0];
  p.disp_min_w = disp_min[1];
  p.disp_step_h = disp_steps[0];
  p.disp_step_w = disp_steps[1];
  p.disp_count_h = disp_count[0];
  p.disp_count_w = disp_count[1];
  p.groups = groups;
  p.scale = scale;
  p.out_h = window_count(p.height, p.pad_h, p.dilation_h, p.kernel_h, p.stride_h);
  p.out_w = window_count(p.width, p.pad_w, p.dilation_w, p.kernel_w, p.stride_w);
  TORCH_CHECK(
      p.out_h >= 1 && p.out_w >= 1,
      "correlation(): expected a non-empty output, but the input of spatial size (",
      p.height, ", ", p.width, ") with kernel_size=(", p.kernel_h, ", ", p.kernel_w,
      "), dilation=(", p.dilation_h, ", ", p.dilation_w, ") and padding=(",
      p.pad_h, ", ", p.pad_w, ") gives an output of size (", p.out_h, ", ",
      p.out_w, ")");
  return p;
}

// Output sizes of the forward, in the input's batched/unbatched form.
inline std::vector<int64_t> correlation_output_sizes(
    const TensorBase& input1, const CorrelationParams& p) {
  if (input1.dim() == 4) {
    return {p.batch, p.out_channels(), p.out_h, p.out_w};
  }
  return {p.out_channels(), p.out_h, p.out_w};
}

// The backward additionally checks grad_output against the forward's shape:
// a mismatch would make the kernels read out of bounds.
inline void check_correlation_grad_output(
    const TensorBase& grad_output,
    const TensorBase& input1,
    const CorrelationParams& p) {
  TORCH_CHECK(grad_output.defined(),
      "correlation_backward(): expected grad_output to be defined");
  TORCH_CHECK(
      grad_output.device() == input1.device(),
      "correlation_backward(): expected grad_output and input1 to be on the same "
      "device, but grad_output is on ", grad_output.device(), " and input1 is on ",
      input1.device());
  TORCH_CHECK(
      grad_output.scalar_type() == input1.scalar_type(),
      "correlation_backward(): expected grad_output to have dtype ",
      input1.scalar_type(), ", but got ", grad_output.scalar_type());
  const auto expected = correlation_output_sizes(input1, p);
  TORCH_CHECK_VALUE(
      grad_output.sizes() == IntArrayRef(expected),
      "correlation_backward(): expected grad_output to have sizes ",
      IntArrayRef(expected), ", but got ", grad_output.sizes());
}

} // namespace at::native
