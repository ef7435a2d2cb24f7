// Manual derivative helpers for correlation; see FunctionsManual_correlation.h.
// The text between the markers is what tools/apply_patch.py appends to
// torch/csrc/autograd/FunctionsManual.cpp.

#include <ATen/ATen.h>
#include <csrc/autograd/FunctionsManual_correlation.h>

namespace torch::autograd::generated::details {

// [correlation begin]
// correlation is bilinear: out = C(x1, x2). Its backward computes
//   g1 = B1(go, x2),  g2 = B2(go, x1)
// where B1(., x2) and B2(., x1) are the adjoints of C(., x2) and C(x1, .).
// Given the gradients gg1, gg2 flowing into (g1, g2):
//   d/d go = C(gg1, x2) + C(x1, gg2)   (adjoint of an adjoint is the map)
//   d/d x1 = B1(go, gg2)               (g2 is linear in x1 through C(x1, .))
//   d/d x2 = B2(go, gg1)               (g1 is linear in x2 through C(., x2))
// so the double backward is two correlations and two correlation backwards.
std::tuple<at::Tensor, at::Tensor, at::Tensor> correlation_double_backward(
    const at::Tensor& grad_grad_input1,
    const at::Tensor& grad_grad_input2,
    const at::Tensor& grad_output,
    const at::Tensor& input1,
    const at::Tensor& input2,
    at::IntArrayRef max_displacement,
    at::OptionalIntArrayRef min_displacement,
    at::IntArrayRef kernel_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    at::IntArrayRef displacement_stride,
    int64_t groups,
    double scale,
    std::array<bool, 3> output_mask) {
  const bool has_gg1 = grad_grad_input1.defined();
  const bool has_gg2 = grad_grad_input2.defined();
  const auto corr = [&](const at::Tensor& a, const at::Tensor& b) {
    return at::correlation(
        a,
        b,
        max_displacement,
        min_displacement,
        kernel_size,
        stride,
        padding,
        dilation,
        displacement_stride,
        groups,
        scale);
  };
  const auto corr_backward =
      [&](const at::Tensor& a, const at::Tensor& b, std::array<bool, 2> mask) {
        return at::correlation_backward(
            grad_output,
            a,
            b,
            max_displacement,
            min_displacement,
            kernel_size,
            stride,
            padding,
            dilation,
            displacement_stride,
            groups,
            scale,
            mask);
      };

  at::Tensor grad_grad_output;
  if (output_mask[0]) {
    if (has_gg1) {
      grad_grad_output = corr(grad_grad_input1, input2);
    }
    if (has_gg2) {
      auto term = corr(input1, grad_grad_input2);
      grad_grad_output = grad_grad_output.defined() ? grad_grad_output + term
                                                    : std::move(term);
    }
  }
  at::Tensor grad_input1;
  if (output_mask[1] && has_gg2) {
    grad_input1 =
        std::get<0>(corr_backward(input1, grad_grad_input2, {true, false}));
  }
  at::Tensor grad_input2;
  if (output_mask[2] && has_gg1) {
    grad_input2 =
        std::get<1>(corr_backward(grad_grad_input1, input2, {false, true}));
  }
  return std::make_tuple(
      std::move(grad_grad_output),
      std::move(grad_input1),
      std::move(grad_input2));
}
// [correlation end]

}  // namespace torch::autograd::generated::details
