// STUB (tools/check_patch_stubs/): the wheel does not ship this file.
#include <torch/csrc/autograd/FunctionsManual.h>

namespace torch::autograd::generated::details {

using at::Tensor;

Tensor values_backward(const Tensor& grad, const Tensor& self);

} // namespace torch::autograd::generated::details
