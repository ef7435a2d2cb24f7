#pragma once

// Argument checks and the derived geometry of correlation, shared by every
// backend (CPU, CUDA, Meta) and by both the forward and the backward.
// See NOTE [ correlation Native Functions ] in SpatialCorrelation.cpp.
//
// The helpers take TensorBase so that .cu files can include this header.
// Checks that involve tensor sizes are written over SymInt, so that the Meta
// kernel runs the same checks on symbolic sizes (torch.compile with dynamic
// shapes): there they become runtime assertions (TORCH_SYM_CHECK) rather
// than guards that would specialise the graph.

#include <ATen/core/TensorBase.h>
#include <c10/core/ScalarType.h>
#include <c10/core/SymBool.h>
#include <c10/core/SymInt.h>
#include <c10/core/SymIntArrayRef.h>
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
// The displacements along each axis form the ascending arithmetic
// progression
//   disp_min_h + a * disp_step_h,  a in [0, disp_count_h),  disp_step_h > 0
// (likewise w): the kernels walk displacements in this order. A negative
// displacement_stride asks for the same set in descending order
// (disp_descending_h/w), which only changes the output channel that
// displacement number (a, b) is written to: output channel
// g * D + displacement_channel(a, b) holds group g, vertical displacement
// number a and horizontal displacement number b.
//
// With an offset, input2 is sampled bilinearly at fractional positions in
// its own pixel grid, which may differ from input1's (height2, width2).
// Without one, height2 == height and width2 == width.
struct CorrelationParams {
  int64_t batch = 0;
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t height2 = 0;
  int64_t width2 = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t disp_min_h = 0, disp_min_w = 0;
  int64_t disp_step_h = 1, disp_step_w = 1;
  int64_t disp_count_h = 1, disp_count_w = 1;
  bool disp_descending_h = false, disp_descending_w = false;
  int64_t groups = 1;
  double scale = 1.0;
  int64_t out_h = 0, out_w = 0;

  int64_t channels_per_group() const {
    return channels / groups;
  }
  int64_t displacements() const {
    return disp_count_h * disp_count_w;
  }
  int64_t out_channels() const {
    return groups * displacements();
  }
  int64_t disp_max_h() const {
    return disp_min_h + (disp_count_h - 1) * disp_step_h;
  }
  int64_t disp_max_w() const {
    return disp_min_w + (disp_count_w - 1) * disp_step_w;
  }
  // Output channel (within a group) of vertical displacement number a and
  // horizontal displacement number b, both counted in ascending order.
  int64_t displacement_channel(int64_t a, int64_t b) const {
    return (disp_descending_h ? disp_count_h - 1 - a : a) * disp_count_w +
        (disp_descending_w ? disp_count_w - 1 - b : b);
  }
  // Change of the output channel from horizontal displacement number b to
  // b + 1: consecutive displacements are consecutive channels, ascending
  // or descending.
  int64_t displacement_channel_step_w() const {
    return disp_descending_w ? -1 : 1;
  }
};

namespace correlation_detail {

// Reads an `int[2]` schema argument. The Python binding expands a single int
// to a pair, but C++ callers may pass one element, so accept both.
inline std::array<int64_t, 2> expand_pair(IntArrayRef value, const char* name) {
  TORCH_CHECK(
      value.size() == 1 || value.size() == 2,
      "correlation(): expected ",
      name,
      " to be a single int or a pair of ints, "
      "but got ",
      value.size(),
      " values: ",
      value);
  return value.size() == 1 ? std::array<int64_t, 2>{value[0], value[0]}
                           : std::array<int64_t, 2>{value[0], value[1]};
}

inline void check_positive_pair(
    const std::array<int64_t, 2>& value,
    const char* name) {
  TORCH_CHECK(
      value[0] >= 1 && value[1] >= 1,
      "correlation(): expected ",
      name,
      " to be positive, but got ",
      name,
      "=(",
      value[0],
      ", ",
      value[1],
      ")");
}

// The padded input size minus the dilated kernel extent along one axis: the
// sliding window fits at least once iff it is non-negative, and then there
// are span / stride + 1 positions (conv2d's formula).
inline c10::SymInt window_span(
    const c10::SymInt& size,
    int64_t pad,
    int64_t dilation,
    int64_t kernel) {
  return size + 2 * pad - dilation * (kernel - 1) - 1;
}

// The same count for a possibly negative span (floor division), for error
// messages only.
inline int64_t window_count_for_message(
    const c10::SymInt& span,
    int64_t stride) {
  const int64_t s = span.guard_int(__FILE__, __LINE__);
  return (s >= 0 ? s / stride : -((-s + stride - 1) / stride)) + 1;
}

}  // namespace correlation_detail

// Checks the two inputs: defined, strided, 3D or 4D, same shape (with an
// offset: same batch and channels, any height and width), device and dtype,
// and a dtype every backend has a kernel for. This is the only dtype check:
// Meta rejects exactly what CPU and CUDA reject (Float8, integer, complex,
// ...), so FakeTensor and the real kernels agree.
inline void check_correlation_inputs(
    const TensorBase& input1,
    const TensorBase& input2,
    bool has_offset) {
  TORCH_CHECK(
      input1.defined() && input2.defined(),
      "correlation(): expected input1 and input2 to be defined");
  TORCH_CHECK(
      input1.layout() == kStrided && input2.layout() == kStrided,
      "correlation(): expected input1 and input2 to have torch.strided layout, "
      "but input1 has ",
      input1.layout(),
      " and input2 has ",
      input2.layout());
  TORCH_CHECK(
      input1.dim() == 3 || input1.dim() == 4,
      "correlation(): expected input1 to be a 3D (C, H, W) or 4D (N, C, H, W) "
      "tensor, but got input1 with sizes ",
      input1.sym_sizes());
  if (has_offset) {
    // input2 is sampled in its own pixel grid (e.g. a coarser level of a
    // pyramid), so only the batch and channel sizes must agree.
    const auto sizes1 = input1.sym_sizes();
    const auto sizes2 = input2.sym_sizes();
    TORCH_CHECK(
        sizes2.size() == sizes1.size() &&
            sizes1.slice(0, sizes1.size() - 2) ==
                sizes2.slice(0, sizes2.size() - 2),
        "correlation(): with an offset, expected input2 to have the same "
        "number of dimensions, batch size and channels as input1 (its height "
        "and width may differ), but got input1 with sizes ",
        sizes1,
        " and input2 with sizes ",
        sizes2);
  } else {
    TORCH_CHECK(
        input1.sym_sizes() == input2.sym_sizes(),
        "correlation(): expected input1 and input2 to have the same shape, but "
        "got input1 with sizes ",
        input1.sym_sizes(),
        " and input2 with sizes ",
        input2.sym_sizes());
  }
  TORCH_CHECK(
      input1.device() == input2.device(),
      "correlation(): expected input1 and input2 to be on the same device, but "
      "input1 is on ",
      input1.device(),
      " and input2 is on ",
      input2.device());
  TORCH_CHECK(
      input1.scalar_type() == input2.scalar_type(),
      "correlation(): expected input1 and input2 to have the same dtype, but "
      "input1 has ",
      input1.scalar_type(),
      " and input2 has ",
      input2.scalar_type());
  const auto dtype = input1.scalar_type();
  TORCH_CHECK(
      dtype == kDouble || dtype == kFloat || dtype == kHalf ||
          dtype == kBFloat16,
      "correlation(): expected a floating point dtype (float64, float32, float16 "
      "or bfloat16), but got ",
      dtype);
}

// Checks the non-tensor arguments and derives everything in
// CorrelationParams that does not depend on the input sizes (batch,
// channels, height, width, out_h and out_w are left unset).
inline CorrelationParams correlation_arguments(
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
  const auto max_disp = expand_pair(max_displacement, "max_displacement");
  const auto kernel = expand_pair(kernel_size, "kernel_size");
  const auto strides = expand_pair(stride, "stride");
  const auto pads = expand_pair(padding, "padding");
  const auto dilations = expand_pair(dilation, "dilation");
  const auto disp_steps =
      expand_pair(displacement_stride, "displacement_stride");
  check_positive_pair(kernel, "kernel_size");
  check_positive_pair(strides, "stride");
  check_positive_pair(dilations, "dilation");
  TORCH_CHECK(
      disp_steps[0] != 0 && disp_steps[1] != 0,
      "correlation(): expected displacement_stride to be nonzero, but got "
      "displacement_stride=(",
      disp_steps[0],
      ", ",
      disp_steps[1],
      ")");
  TORCH_CHECK(
      pads[0] >= 0 && pads[1] >= 0,
      "correlation(): expected padding to be non-negative, but got padding=(",
      pads[0],
      ", ",
      pads[1],
      ")");
  TORCH_CHECK(
      groups >= 1,
      "correlation(): expected groups to be positive, but got groups=",
      groups);

  // The kernels' ascending progression: a negative displacement_stride
  // walks from the top of the range down, {max, max + s, ...} >= min, which
  // is the ascending set {max - (count - 1) * |s|, ..., max} reversed.
  std::array<int64_t, 2> disp_min{};
  std::array<int64_t, 2> disp_count{};
  std::array<int64_t, 2> disp_step{};
  std::array<bool, 2> descending{};
  for (const auto axis : c10::irange(2)) {
    descending[axis] = disp_steps[axis] < 0;
    disp_step[axis] = descending[axis] ? -disp_steps[axis] : disp_steps[axis];
  }
  if (min_displacement.has_value()) {
    const auto min_disp = expand_pair(*min_displacement, "min_displacement");
    for (const auto axis : c10::irange(2)) {
      TORCH_CHECK(
          min_disp[axis] <= max_disp[axis],
          "correlation(): expected min_displacement <= max_displacement, but got "
          "min_displacement=(",
          min_disp[0],
          ", ",
          min_disp[1],
          ") and max_displacement=(",
          max_disp[0],
          ", ",
          max_disp[1],
          ")");
      disp_count[axis] =
          (max_disp[axis] - min_disp[axis]) / disp_step[axis] + 1;
      disp_min[axis] = descending[axis]
          ? max_disp[axis] - (disp_count[axis] - 1) * disp_step[axis]
          : min_disp[axis];
    }
  } else {
    for (const auto axis : c10::irange(2)) {
      TORCH_CHECK(
          max_disp[axis] >= 0,
          "correlation(): expected max_displacement to be non-negative when "
          "min_displacement is None, but got max_displacement=(",
          max_disp[0],
          ", ",
          max_disp[1],
          ")");
      // Symmetric range of multiples of the step: {k * s : |k * s| <= max}.
      const int64_t half = max_disp[axis] / disp_step[axis];
      disp_min[axis] = -half * disp_step[axis];
      disp_count[axis] = 2 * half + 1;
    }
  }

  CorrelationParams p;
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
  p.disp_step_h = disp_step[0];
  p.disp_step_w = disp_step[1];
  p.disp_count_h = disp_count[0];
  p.disp_count_w = disp_count[1];
  p.disp_descending_h = descending[0];
  p.disp_descending_w = descending[1];
  p.groups = groups;
  p.scale = scale;
  return p;
}

// Checks input1's sizes against the arguments and returns the forward's
// output sizes, in the input's batched (N, groups * D, H_out, W_out) or
// unbatched (groups * D, H_out, W_out) form. Concrete or symbolic sizes.
inline c10::SymDimVector correlation_output_sym_sizes(
    const TensorBase& input1,
    const CorrelationParams& p) {
  using namespace correlation_detail;
  const bool batched = input1.dim() == 4;
  const auto sizes = input1.sym_sizes();
  const c10::SymInt& channels = sizes[batched ? 1 : 0];
  const c10::SymInt& height = sizes[batched ? 2 : 1];
  const c10::SymInt& width = sizes[batched ? 3 : 2];
  TORCH_SYM_CHECK(
      (channels % p.groups).sym_eq(0),
      "correlation(): expected the number of channels (",
      channels,
      ") to be divisible by groups (",
      p.groups,
      ")");
  const auto span_h = window_span(height, p.pad_h, p.dilation_h, p.kernel_h);
  const auto span_w = window_span(width, p.pad_w, p.dilation_w, p.kernel_w);
  TORCH_SYM_CHECK(
      span_h.sym_ge(0) & span_w.sym_ge(0),
      "correlation(): expected a non-empty output, but the input of spatial size (",
      height,
      ", ",
      width,
      ") with kernel_size=(",
      p.kernel_h,
      ", ",
      p.kernel_w,
      "), dilation=(",
      p.dilation_h,
      ", ",
      p.dilation_w,
      ") and padding=(",
      p.pad_h,
      ", ",
      p.pad_w,
      ") gives an output of size (",
      window_count_for_message(span_h, p.stride_h),
      ", ",
      window_count_for_message(span_w, p.stride_w),
      ")");
  // Both spans are non-negative here, so / is floor division.
  c10::SymDimVector out;
  if (batched) {
    out.push_back(sizes[0]);
  }
  out.push_back(c10::SymInt(p.out_channels()));
  out.push_back(span_h / p.stride_h + 1);
  out.push_back(span_w / p.stride_w + 1);
  return out;
}

// Checks the offset of a call that has one: strided, input1's device and
// dtype, and (N, 2, H_out, W_out) (unbatched: (2, H_out, W_out)) for the
// output sizes `output_sizes`.
inline void check_correlation_offset(
    const TensorBase& offset,
    const TensorBase& input1,
    c10::SymIntArrayRef output_sizes) {
  TORCH_CHECK(
      offset.layout() == kStrided,
      "correlation(): expected offset to have torch.strided layout, but got ",
      offset.layout());
  TORCH_CHECK(
      offset.device() == input1.device(),
      "correlation(): expected offset to be on the same device as input1, but "
      "offset is on ",
      offset.device(),
      " and input1 is on ",
      input1.device());
  TORCH_CHECK(
      offset.scalar_type() == input1.scalar_type(),
      "correlation(): expected offset to have the same dtype as input1 (",
      input1.scalar_type(),
      "), but got ",
      offset.scalar_type());
  c10::SymDimVector expected(output_sizes.begin(), output_sizes.end());
  expected[expected.size() - 3] = c10::SymInt(2);
  const char* const layout = output_sizes.size() == 4
      ? "(N, 2, H_out, W_out) = "
      : "(2, H_out, W_out) = ";
  TORCH_CHECK(
      offset.sym_sizes() == c10::SymIntArrayRef(expected),
      "correlation(): expected offset of sizes ",
      layout,
      c10::SymIntArrayRef(expected),
      " (the displacement (u, v) of input2's samples at each output "
      "location), but got offset with sizes ",
      offset.sym_sizes());
}

// Every check of the forward, in the one order all backends (CPU, CUDA,
// Meta) share, so that a bad call fails with the same error on each; returns
// the geometry with the sizes filled in when they are concrete.
struct CorrelationChecked {
  CorrelationParams params;
  c10::SymDimVector output_sizes;
};

inline CorrelationChecked check_correlation(
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    IntArrayRef max_displacement,
    at::OptionalIntArrayRef min_displacement,
    IntArrayRef kernel_size,
    IntArrayRef stride,
    IntArrayRef padding,
    IntArrayRef dilation,
    IntArrayRef displacement_stride,
    int64_t groups,
    double scale) {
  check_correlation_inputs(input1, input2, offset.defined());
  CorrelationChecked checked;
  checked.params = correlation_arguments(
      max_displacement,
      min_displacement,
      kernel_size,
      stride,
      padding,
      dilation,
      displacement_stride,
      groups,
      scale);
  checked.output_sizes = correlation_output_sym_sizes(input1, checked.params);
  if (offset.defined()) {
    check_correlation_offset(offset, input1, checked.output_sizes);
  }
  return checked;
}

// The geometry for the CPU and CUDA kernels, whose inputs have concrete
// sizes. The inputs may be batched (4D) or unbatched (3D); the returned batch
// is 1 for the latter.
inline CorrelationParams correlation_params(
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationChecked& checked) {
  CorrelationParams p = checked.params;
  const bool batched = input1.dim() == 4;
  p.batch = batched ? input1.size(0) : 1;
  p.channels = input1.size(batched ? 1 : 0);
  p.height = input1.size(batched ? 2 : 1);
  p.width = input1.size(batched ? 3 : 2);
  p.height2 = input2.size(batched ? 2 : 1);
  p.width2 = input2.size(batched ? 3 : 2);
  const auto& out = checked.output_sizes;
  p.out_h = out[out.size() - 2].expect_int();
  p.out_w = out[out.size() - 1].expect_int();
  return p;
}

// The backward additionally checks grad_output against the forward's shape:
// a mismatch would make the kernels read out of bounds.
inline void check_correlation_grad_output(
    const TensorBase& grad_output,
    const TensorBase& input1,
    c10::SymIntArrayRef expected_sizes) {
  TORCH_CHECK(
      grad_output.defined(),
      "correlation_backward(): expected grad_output to be defined");
  TORCH_CHECK(
      grad_output.device() == input1.device(),
      "correlation_backward(): expected grad_output and input1 to be on the same "
      "device, but grad_output is on ",
      grad_output.device(),
      " and input1 is on ",
      input1.device());
  TORCH_CHECK(
      grad_output.scalar_type() == input1.scalar_type(),
      "correlation_backward(): expected grad_output to have dtype ",
      input1.scalar_type(),
      ", but got ",
      grad_output.scalar_type());
  TORCH_CHECK_VALUE(
      grad_output.sym_sizes() == expected_sizes,
      "correlation_backward(): expected grad_output to have sizes ",
      expected_sizes,
      ", but got ",
      grad_output.sym_sizes());
}

}  // namespace at::native
