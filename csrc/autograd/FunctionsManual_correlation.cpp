// Manual derivative helpers for correlation; see FunctionsManual_correlation.h.
// The text between the markers is what tools/apply_patch.py appends to
// torch/csrc/autograd/FunctionsManual.cpp.

#include <ATen/ATen.h>
#include <csrc/autograd/FunctionsManual_correlation.h>

namespace torch::autograd::generated::details {

// [correlation begin]
// correlation with a fixed offset is bilinear: out = C(x1, x2). Its backward
// computes
//   g1 = B1(go, x2),  g2 = B2(go, x1)
// where B1(., x2) and B2(., x1) are the adjoints of C(., x2) and C(x1, .),
// and, with an offset, the offset gradient goff = B3(go, x1, x2), linear in
// each of the three.

namespace {

// correlation and correlation_backward with the non-tensor arguments of the
// call being differentiated bound, so that the formulas below name only the
// tensors that change between their terms.
struct CorrelationOp {
  at::IntArrayRef max_displacement;
  at::OptionalIntArrayRef min_displacement;
  at::IntArrayRef kernel_size;
  at::IntArrayRef stride;
  at::IntArrayRef padding;
  at::IntArrayRef dilation;
  at::IntArrayRef displacement_stride;
  int64_t groups;
  double scale;

  at::Tensor forward(
      const at::Tensor& input1,
      const at::Tensor& input2,
      const at::Tensor& offset) const {
    return at::correlation(
        input1,
        input2,
        max_displacement,
        offset,
        min_displacement,
        kernel_size,
        stride,
        padding,
        dilation,
        displacement_stride,
        groups,
        scale);
  }

  std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
      const at::Tensor& grad_output,
      const at::Tensor& input1,
      const at::Tensor& input2,
      const at::Tensor& offset,
      std::array<bool, 3> output_mask) const {
    return at::correlation_backward(
        grad_output,
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
        scale,
        output_mask);
  }
};

// The derivatives of the output with respect to the offset's two components
// at each output location, (d out / du, d out / dv), shaped like the output.
// input2's bilinear sample S(y, x) has d S / dx = the vertical interpolation
// (at y) of the column difference input2[.., floor(x) + 1] -
// input2[.., floor(x)], with zeros outside: a correlation of input1 with
// the padded column differences of input2, sampled at the horizontal
// position rounded down (an integer, so no horizontal interpolation). At
// integer positions this is the one-sided derivative the kernels use.
std::tuple<at::Tensor, at::Tensor> correlation_offset_sensitivities(
    const CorrelationOp& corr,
    const at::Tensor& input1,
    const at::Tensor& input2,
    const at::Tensor& offset) {
  const auto u = offset.narrow(-3, 0, 1);
  const auto v = offset.narrow(-3, 1, 1);
  // Column k of the differences is input2[k] - input2[k - 1] (k = 0 .. W2),
  // so the difference right of floor(x) is column floor(x) + 1: one more
  // than the sample's own column, hence the + 1 in the offset.
  const auto column_differences =
      at::constant_pad_nd(input2, {1, 1, 0, 0}).diff(1, -1);
  const auto row_differences =
      at::constant_pad_nd(input2, {0, 0, 1, 1}).diff(1, -2);
  auto d_du =
      corr.forward(input1, column_differences, at::cat({u.floor() + 1, v}, -3));
  auto d_dv =
      corr.forward(input1, row_differences, at::cat({u, v.floor() + 1}, -3));
  return std::make_tuple(std::move(d_du), std::move(d_dv));
}

}  // namespace

// Forward-mode derivative of correlation:
//   d out = C(dx1, x2) + C(x1, dx2) + (d out/du) du + (d out/dv) dv
// where du and dv are the offset tangent's components, broadcast over the
// output channels.
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
    double scale) {
  const CorrelationOp corr{
      max_displacement,
      min_displacement,
      kernel_size,
      stride,
      padding,
      dilation,
      displacement_stride,
      groups,
      scale};
  auto result = corr.forward(input1_t, input2_p, offset_p) +
      corr.forward(input1_p, input2_t, offset_p);
  if (offset_p.defined() && offset_t.defined() && !offset_t._is_zerotensor()) {
    const auto [d_du, d_dv] =
        correlation_offset_sensitivities(corr, input1_p, input2_p, offset_p);
    result = result + d_du * offset_t.narrow(-3, 0, 1) +
        d_dv * offset_t.narrow(-3, 1, 1);
  }
  return result;
}

// Forward-mode derivative of correlation_backward's result `which` (0: g1,
// 1: g2, 2: goff), from the linearity of each in its arguments:
//   d g1 = B1(d go, x2) + B1(go, d x2)
//   d g2 = B2(d go, x1) + B2(go, d x1)
//   d goff = B3(d go, x1, x2) + B3(go, d x1, x2) + B3(go, x1, d x2)
// The offset tangent's term (second derivatives of the bilinear samples) is
// not implemented.
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
    int64_t which) {
  TORCH_CHECK(
      !offset_p.defined() || !offset_t.defined() || offset_t._is_zerotensor(),
      "correlation_backward(): forward-mode differentiation of correlation's "
      "gradients with respect to offset is not implemented; detach offset "
      "(its gradients with respect to input1 and input2 are supported)");
  const CorrelationOp corr{
      max_displacement,
      min_displacement,
      kernel_size,
      stride,
      padding,
      dilation,
      displacement_stride,
      groups,
      scale};
  std::array<bool, 3> mask{false, false, false};
  mask[which] = true;
  const auto part =
      [&](const at::Tensor& go, const at::Tensor& x1, const at::Tensor& x2) {
        auto grads = corr.backward(go, x1, x2, offset_p, mask);
        return which == 0
            ? std::get<0>(grads)
            : (which == 1 ? std::get<1>(grads) : std::get<2>(grads));
      };
  auto result = part(grad_output_t, input1_p, input2_p);
  if (which != 1) {
    result = result + part(grad_output_p, input1_p, input2_t);
  }
  if (which != 0) {
    result = result + part(grad_output_p, input1_t, input2_p);
  }
  return result;
}

// Given the gradients gg1, gg2 flowing into (g1, g2), for a fixed offset:
//   d/d go = C(gg1, x2) + C(x1, gg2)   (adjoint of an adjoint is the map)
//   d/d x1 = B1(go, gg2)               (g2 is linear in x1 through C(x1, .))
//   d/d x2 = B2(go, gg1)               (g1 is linear in x2 through C(., x2))
// so the double backward is two correlations and two correlation backwards.
// Differentiating twice through the offset (the offset's own gradient, or
// the gradient flowing into goff) is not implemented and raises.
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
    std::array<bool, 4> output_mask) {
  TORCH_CHECK(
      !offset.defined() || (!output_mask[3] && !grad_grad_offset.defined()),
      "correlation(): double backward through offset is not implemented "
      "(offset's gradient must not be differentiated, and offset must not "
      "require grad when correlation's gradients are); detach offset to "
      "differentiate twice with respect to input1 and input2");
  const bool has_gg1 = grad_grad_input1.defined();
  const bool has_gg2 = grad_grad_input2.defined();
  const CorrelationOp corr{
      max_displacement,
      min_displacement,
      kernel_size,
      stride,
      padding,
      dilation,
      displacement_stride,
      groups,
      scale};
  at::Tensor grad_grad_output;
  if (output_mask[0]) {
    if (has_gg1) {
      grad_grad_output = corr.forward(grad_grad_input1, input2, offset);
    }
    if (has_gg2) {
      auto term = corr.forward(input1, grad_grad_input2, offset);
      grad_grad_output = grad_grad_output.defined() ? grad_grad_output + term
                                                    : std::move(term);
    }
  }
  at::Tensor grad_input1;
  if (output_mask[1] && has_gg2) {
    grad_input1 = std::get<0>(corr.backward(
        grad_output, input1, grad_grad_input2, offset, {true, false, false}));
  }
  at::Tensor grad_input2;
  if (output_mask[2] && has_gg1) {
    grad_input2 = std::get<1>(corr.backward(
        grad_output, grad_grad_input1, input2, offset, {false, true, false}));
  }
  return std::make_tuple(
      std::move(grad_grad_output),
      std::move(grad_input1),
      std::move(grad_input2),
      at::Tensor());
}
// [correlation end]

}  // namespace torch::autograd::generated::details
