#pragma once

#include <ATen/native/DispatchStub.h>

namespace at {
class TensorBase;
}

namespace at::native {

struct CorrelationParams;

// Fills `output` (batched, 4D, any strides) with the cost volume of the
// batched 4D `input1` and `input2`. Every element of `output` is written.
using correlation_fn = void (*)(
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& params);

// Fills the defined ones of `grad_input1` and `grad_input2` (batched, 4D, any
// strides, same shape as the inputs); an undefined tensor means that gradient
// was not requested. Every element of a defined gradient is written, each by
// exactly one thread (a gather, so the result is deterministic).
using correlation_backward_fn = void (*)(
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& params);

// The same with an offset: input2 (height2 x width2, which may differ from
// input1's) is sampled bilinearly at the positions moved by `offset`
// (batched, 4D (N, 2, out_h, out_w), any strides, input1's dtype), with
// zeros outside. Every element of `output` is written.
using correlation_offset_fn = void (*)(
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& params);

// The gradients of correlation_offset_fn: fills the defined ones of
// `grad_input1`, `grad_input2` and `grad_offset` (shaped like input1, input2
// and offset), every element of each, deterministically.
using correlation_offset_backward_fn = void (*)(
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_offset,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& params);

DECLARE_DISPATCH(correlation_fn, correlation_stub)
DECLARE_DISPATCH(correlation_backward_fn, correlation_backward_stub)
DECLARE_DISPATCH(correlation_offset_fn, correlation_offset_stub)
DECLARE_DISPATCH(
    correlation_offset_backward_fn,
    correlation_offset_backward_stub)

}  // namespace at::native
