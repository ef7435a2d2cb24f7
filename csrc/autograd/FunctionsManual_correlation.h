#pragma once

// Manual derivative helpers for correlation. The text between the markers is
// what tools/apply_patch.py adds to torch/csrc/autograd/FunctionsManual.h
// (inside namespace torch::autograd::generated::details); the preview build
// includes this header from its generated prelude.

#include <ATen/core/Tensor.h>
#include <c10/util/OptionalArrayRef.h>

#include <array>
#include <tuple>

namespace torch::autograd::generated::details {

// [correlation begin]
at::Tensor correlation_jvp(
    const at::Tensor& input1_p,
    const at::Tensor& input1_t,
    const at::Tensor& input2_p,
    const at::Tensor& input2_t,
    const at::Tensor& offset_p,
    const at::Tensor& offset_t,
    at::IntArrayRef max_displacement,
    at::OptionalIntArrayRef min_displacement,
    at::IntArrayRef kernel_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    at::IntArrayRef displacement_stride,
    int64_t groups,
    double scale);
at::Tensor correlation_backward_jvp(
    const at::Tensor& grad_output_p,
    const at::Tensor& grad_output_t,
    const at::Tensor& input1_p,
    const at::Tensor& input1_t,
    const at::Tensor& input2_p,
    const at::Tensor& input2_t,
    const at::Tensor& offset_p,
    const at::Tensor& offset_t,
    at::IntArrayRef max_displacement,
    at::OptionalIntArrayRef min_displacement,
    at::IntArrayRef kernel_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    at::IntArrayRef displacement_stride,
    int64_t groups,
    double scale,
    int64_t which);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>
correlation_double_backward(
    const at::Tensor& grad_grad_input1,
    const at::Tensor& grad_grad_input2,
    const at::Tensor& grad_grad_offset,
    const at::Tensor& grad_output,
    const at::Tensor& input1,
    const at::Tensor& input2,
    const at::Tensor& offset,
    at::IntArrayRef max_displacement,
    at::OptionalIntArrayRef min_displacement,
    at::IntArrayRef kernel_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    at::IntArrayRef displacement_stride,
    int64_t groups,
    double scale,
    std::array<bool, 4> output_mask);
// [correlation end]

}  // namespace torch::autograd::generated::details
