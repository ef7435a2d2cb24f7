#define TORCH_ASSERT_NO_OPERATORS
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/native/cpu/SpatialCorrelationKernel.h>
#include <c10/cuda/CUDAGuard.h>

#include <ATen/native/cuda/SpatialCorrelation.cuh>
#include <ATen/native/cuda/SpatialCorrelationOffset.cuh>
#include <cstdint>
#include <initializer_list>

// The kernels are in SpatialCorrelation.cuh (NOTE [ Correlation CUDA
// Kernels ]) and, with an offset, SpatialCorrelationOffset.cuh (NOTE [
// Correlation CUDA Offset Kernels ]); this file starts them on the current
// stream.

namespace at::native {

namespace correlation_cuda {

template <typename T>
__device__ __forceinline__ T* dynamic_shared_memory() {
  extern __shared__ __align__(16) unsigned char correlation_shared[];
  return reinterpret_cast<T*>(correlation_shared);
}

}  // namespace correlation_cuda

namespace {

// The `launch` of the launch sequence: one kernel on the current stream.
struct StreamLaunch {
  cudaStream_t stream;

  template <typename... Params, typename... Args>
  void operator()(
      void (*kernel)(Params...),
      int64_t blocks,
      int threads,
      int64_t shared_bytes,
      const Args&... args) const {
    kernel<<<static_cast<unsigned>(blocks), threads, shared_bytes, stream>>>(
        args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

// The `workspace` of the offset backward: scratch memory from the caching
// allocator, on the device of `like`. It is freed when the launch sequence
// returns, after its kernels are queued on the current stream, which is the
// stream the allocator associates it with, so later work on that stream
// cannot reuse it before they finish.
struct DeviceWorkspace {
  const TensorBase& like;

  TensorBase operator()(int64_t bytes) const {
    return at::detail::empty_cuda(
        {bytes}, kByte, like.device(), /*memory_format=*/std::nullopt);
  }
};

void check_cuda_tensors(
    const char* op,
    const TensorBase& reference,
    std::initializer_list<const TensorBase*> tensors) {
  for (const TensorBase* t : tensors) {
    if (!t->defined()) {
      continue;
    }
    TORCH_CHECK(
        t->is_cuda() && t->device() == reference.device(),
        op,
        "(): expected all tensors to be on CUDA device ",
        reference.device(),
        ", but got a tensor on ",
        t->device());
    TORCH_CHECK(
        t->dim() == 4,
        op,
        "(): expected batched 4D tensors in the CUDA kernel, but got sizes ",
        t->sizes());
  }
}

void correlation_kernel_cuda(
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& params) {
  // The entry (SpatialCorrelation.cpp) has checked the arguments; these checks
  // guard direct callers of the stub.
  check_cuda_tensors("correlation", input1, {&output, &input1, &input2});
  if (output.numel() == 0) {
    return;
  }
  c10::cuda::CUDAGuard device_guard(input1.device());
  correlation_cuda::run_correlation_forward(
      StreamLaunch{at::cuda::getCurrentCUDAStream()},
      output,
      input1,
      input2,
      params);
}

void correlation_backward_kernel_cuda(
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& params) {
  check_cuda_tensors(
      "correlation_backward",
      input1,
      {&grad_input1, &grad_input2, &grad_output, &input1, &input2});
  if (!grad_input1.defined() && !grad_input2.defined()) {
    return;
  }
  c10::cuda::CUDAGuard device_guard(input1.device());
  correlation_cuda::run_correlation_backward(
      StreamLaunch{at::cuda::getCurrentCUDAStream()},
      grad_input1,
      grad_input2,
      grad_output,
      input1,
      input2,
      params);
}

void correlation_offset_kernel_cuda(
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& params) {
  check_cuda_tensors(
      "correlation", input1, {&output, &input1, &input2, &offset});
  if (output.numel() == 0) {
    return;
  }
  c10::cuda::CUDAGuard device_guard(input1.device());
  correlation_cuda::run_correlation_offset_forward(
      StreamLaunch{at::cuda::getCurrentCUDAStream()},
      output,
      input1,
      input2,
      offset,
      params);
}

void correlation_offset_backward_kernel_cuda(
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_offset,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& params) {
  check_cuda_tensors(
      "correlation_backward",
      input1,
      {&grad_input1,
       &grad_input2,
       &grad_offset,
       &grad_output,
       &input1,
       &input2,
       &offset});
  if (!grad_input1.defined() && !grad_input2.defined() &&
      !grad_offset.defined()) {
    return;
  }
  c10::cuda::CUDAGuard device_guard(input1.device());
  correlation_cuda::run_correlation_offset_backward(
      StreamLaunch{at::cuda::getCurrentCUDAStream()},
      DeviceWorkspace{input1},
      grad_input1,
      grad_input2,
      grad_offset,
      grad_output,
      input1,
      input2,
      offset,
      params);
}

}  // namespace

REGISTER_DISPATCH(correlation_stub, &correlation_kernel_cuda)
REGISTER_DISPATCH(correlation_backward_stub, &correlation_backward_kernel_cuda)
REGISTER_DISPATCH(correlation_offset_stub, &correlation_offset_kernel_cuda)
REGISTER_DISPATCH(
    correlation_offset_backward_stub,
    &correlation_offset_backward_kernel_cuda)

}  // namespace at::native
