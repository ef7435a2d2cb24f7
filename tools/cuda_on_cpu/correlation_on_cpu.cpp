// The CUDA correlation kernels (aten_native/cuda/SpatialCorrelation.cuh and,
// with an offset, SpatialCorrelationOffset.cuh), compiled for the host and
// run by cuda_runtime_on_cpu.h, behind the same arguments as
// aten::correlation and aten::correlation_backward. The launch sequences,
// planners and kernels are the headers', unchanged; this file supplies the
// launch and workspace callables, the dynamic shared memory and the
// allocation and dispatch that SpatialCorrelation.cpp does for the real op.

#include "cuda_runtime_on_cpu.h"

#include <c10/macros/Macros.h>
// c10 defines the launch-bounds macros for CUDA compilers only.
#ifndef C10_LAUNCH_BOUNDS_1
#define C10_LAUNCH_BOUNDS_1(max_threads_per_block)
#endif

#include <ATen/native/cuda/SpatialCorrelationOffset.cuh>

#include <torch/extension.h>

#include <map>
#include <tuple>

namespace at::native::correlation_cuda {

template <typename T>
__device__ __forceinline__ T* dynamic_shared_memory() {
  return static_cast<T*>(cuda_on_cpu::BlockRunner::get().shared_memory());
}

} // namespace at::native::correlation_cuda

namespace {

using namespace at::native;
using namespace at::native::correlation_cuda;

// Launches per (kernel, index type, dtype), for the coverage table.
using CoverageKey = std::tuple<std::string, std::string, std::string>;
std::map<CoverageKey, int64_t> coverage;
std::map<const void*, CoverageKey> kernel_names;

template <typename scalar_t, typename index_t>
void name_kernels() {
  const std::string index = std::is_same_v<index_t, int> ? "int32" : "int64";
  const std::string dtype = c10::toString(c10::CppTypeToScalarType<scalar_t>::value);
  const auto add = [&](const void* kernel, const char* name) {
    kernel_names[kernel] = CoverageKey{name, index, dtype};
    coverage.emplace(CoverageKey{name, index, dtype}, 0);
  };
  add(reinterpret_cast<const void*>(&correlation_forward_tiled_kernel<scalar_t, index_t>),
      "forward tiled");
  add(reinterpret_cast<const void*>(&correlation_forward_generic_kernel<scalar_t, index_t>),
      "forward generic");
  add(reinterpret_cast<const void*>(&correlation_backward_tiled_kernel<scalar_t, index_t, BackwardTarget::kInput1>),
      "grad_input1 tiled");
  add(reinterpret_cast<const void*>(&correlation_backward_input1_generic_kernel<scalar_t, index_t>),
      "grad_input1 generic");
  add(reinterpret_cast<const void*>(&correlation_backward_tiled_kernel<scalar_t, index_t, BackwardTarget::kInput2>),
      "grad_input2 tiled");
  add(reinterpret_cast<const void*>(&correlation_backward_input2_generic_kernel<scalar_t, index_t>),
      "grad_input2 generic");
  add(reinterpret_cast<const void*>(&correlation_offset_forward_kernel<scalar_t, index_t>),
      "offset forward");
  add(reinterpret_cast<const void*>(&correlation_offset_grad_offset_partial_kernel<scalar_t, index_t>),
      "offset grad_offset part");
  add(reinterpret_cast<const void*>(&correlation_offset_grad_offset_reduce_kernel<scalar_t, index_t>),
      "offset grad_offset sum");
  add(reinterpret_cast<const void*>(&correlation_offset_grad_input1_kernel<scalar_t, index_t>),
      "offset grad_input1");
  add(reinterpret_cast<const void*>(&correlation_offset_bucket_kernel<scalar_t, index_t>),
      "offset buckets");
  add(reinterpret_cast<const void*>(&correlation_offset_grad_input2_kernel<scalar_t, index_t>),
      "offset grad_input2");
}

// Kernels of neither a dtype nor an index type (the bucket sort of the
// offset grad_input2, over OffsetSortKey): one row each, dtype "any".
void name_untyped_kernels() {
  const auto add = [&](const void* kernel, const char* name) {
    kernel_names[kernel] = CoverageKey{name, "-", "any"};
    coverage.emplace(CoverageKey{name, "-", "any"}, 0);
  };
  add(reinterpret_cast<const void*>(&correlation_offset_sort_block_kernel<OffsetSortKey>),
      "offset sort block");
  add(reinterpret_cast<const void*>(&correlation_offset_sort_step_kernel<OffsetSortKey>),
      "offset sort step");
  add(reinterpret_cast<const void*>(&correlation_offset_bucket_begin_kernel<OffsetSortKey>),
      "offset bucket begin");
}

void name_all_kernels() {
  if (!kernel_names.empty()) {
    return;
  }
  name_kernels<double, int>();
  name_kernels<double, int64_t>();
  name_kernels<float, int>();
  name_kernels<float, int64_t>();
  name_kernels<at::Half, int>();
  name_kernels<at::Half, int64_t>();
  name_kernels<at::BFloat16, int>();
  name_kernels<at::BFloat16, int64_t>();
  name_untyped_kernels();
}

// The `launch` of the launch sequence, with the checks a GPU launch makes.
struct HostLaunch {
  template <typename... Params, typename... Args>
  void operator()(
      void (*kernel)(Params...), int64_t blocks, int threads, int64_t shared_bytes,
      const Args&... args) const {
    TORCH_CHECK(blocks >= 1 && blocks <= std::numeric_limits<int32_t>::max(),
        "cuda_on_cpu: invalid grid of ", blocks, " blocks");
    TORCH_CHECK(threads >= 1 && shared_bytes >= 0, "cuda_on_cpu: invalid launch");
    const auto name = kernel_names.find(reinterpret_cast<const void*>(kernel));
    TORCH_CHECK(name != kernel_names.end(), "cuda_on_cpu: unknown kernel");
    ++coverage[name->second];
    cuda_on_cpu::launch(
        kernel, static_cast<unsigned int>(blocks), static_cast<unsigned int>(threads),
        static_cast<size_t>(shared_bytes), args...);
  }
};

// The int[2] schema arguments, as Python passes them.
using Ints = std::vector<int64_t>;

at::OptionalIntArrayRef optional_ints(const std::optional<Ints>& value) {
  return value ? at::OptionalIntArrayRef(*value) : at::OptionalIntArrayRef();
}

// Largest element count for which the 32-bit kernels are used.
int64_t index_limit = std::numeric_limits<int32_t>::max();

at::TensorBase as_batched(const at::Tensor& t) {
  return t.dim() == 4 ? t : t.unsqueeze(0);
}

// Outputs are filled with NaN rather than left uninitialized, so that an
// element no kernel thread writes fails the comparison.
// The memory format follows `like`, as in SpatialCorrelation.cpp.
at::Tensor nan_like_layout(at::IntArrayRef sizes, const at::Tensor& like) {
  return at::empty(sizes, like.options(), like.suggest_memory_format())
      .fill_(std::numeric_limits<double>::quiet_NaN());
}

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "cuda_on_cpu: expected ", name, " on the CPU");
}

// The `workspace` of the offset backward: host memory of exactly `bytes`
// bytes (so that AddressSanitizer reports an access past its end), filled
// with 0xff bytes so that a value no kernel wrote shows up.
struct HostWorkspace {
  at::TensorBase operator()(int64_t bytes) const {
    return at::empty({bytes}, at::kByte).fill_(0xff);
  }
};

at::Tensor correlation(
    const at::Tensor& input1, const at::Tensor& input2, const Ints& max_displacement,
    const std::optional<at::Tensor>& offset_opt,
    const std::optional<Ints>& min_displacement, const Ints& kernel_size,
    const Ints& stride, const Ints& padding, const Ints& dilation,
    const Ints& displacement_stride, int64_t groups, double scale) {
  check_cpu(input1, "input1");
  check_cpu(input2, "input2");
  const at::Tensor offset = offset_opt.value_or(at::Tensor());
  if (offset.defined()) {
    check_cpu(offset, "offset");
  }
  name_all_kernels();
  const auto checked = check_correlation(
      input1, input2, offset, max_displacement, optional_ints(min_displacement),
      kernel_size, stride, padding, dilation, displacement_stride, groups, scale);
  auto output =
      nan_like_layout(C10_AS_INTARRAYREF_SLOW(checked.output_sizes), input1);
  if (output.numel() == 0) {
    return output;
  }
  const auto params = correlation_params(input1, input2, checked);
  if (offset.defined()) {
    run_correlation_offset_forward(
        HostLaunch{}, as_batched(output), as_batched(input1), as_batched(input2),
        as_batched(offset), params, index_limit);
  } else {
    run_correlation_forward(
        HostLaunch{}, as_batched(output), as_batched(input1), as_batched(input2),
        params, index_limit);
  }
  return output;
}

std::tuple<std::optional<at::Tensor>, std::optional<at::Tensor>, std::optional<at::Tensor>>
correlation_backward(
    const at::Tensor& grad_output, const at::Tensor& input1, const at::Tensor& input2,
    const std::optional<at::Tensor>& offset_opt, const Ints& max_displacement,
    const std::optional<Ints>& min_displacement, const Ints& kernel_size,
    const Ints& stride, const Ints& padding, const Ints& dilation,
    const Ints& displacement_stride, int64_t groups, double scale,
    std::array<bool, 3> output_mask) {
  check_cpu(grad_output, "grad_output");
  check_cpu(input1, "input1");
  check_cpu(input2, "input2");
  const at::Tensor offset = offset_opt.value_or(at::Tensor());
  if (offset.defined()) {
    check_cpu(offset, "offset");
  }
  name_all_kernels();
  const auto checked = check_correlation(
      input1, input2, offset, max_displacement, optional_ints(min_displacement),
      kernel_size, stride, padding, dilation, displacement_stride, groups, scale);
  check_correlation_grad_output(grad_output, input1, checked.output_sizes);
  std::optional<at::Tensor> grad_input1, grad_input2, grad_offset;
  if (output_mask[0]) {
    grad_input1 = nan_like_layout(input1.sizes(), input1);
  }
  if (output_mask[1]) {
    grad_input2 = nan_like_layout(input2.sizes(), input2);
  }
  // As the entry: without an offset there is no offset gradient.
  if (output_mask[2] && offset.defined()) {
    grad_offset = nan_like_layout(offset.sizes(), offset);
  }
  if (!grad_input1 && !grad_input2 && !grad_offset) {
    return {grad_input1, grad_input2, grad_offset};
  }
  if (grad_output.numel() == 0 || input1.numel() == 0 || input2.numel() == 0) {
    // As the entry: nothing to gather, the gradients are empty or zero.
    for (auto* grad : {&grad_input1, &grad_input2, &grad_offset}) {
      if (*grad) (*grad)->zero_();
    }
    return {grad_input1, grad_input2, grad_offset};
  }
  const at::TensorBase undefined;
  const auto batched_or_undefined = [&](const std::optional<at::Tensor>& t) {
    return t ? as_batched(*t) : undefined;
  };
  const auto params = correlation_params(input1, input2, checked);
  if (offset.defined()) {
    run_correlation_offset_backward(
        HostLaunch{}, HostWorkspace{}, batched_or_undefined(grad_input1),
        batched_or_undefined(grad_input2), batched_or_undefined(grad_offset),
        as_batched(grad_output), as_batched(input1), as_batched(input2),
        as_batched(offset), params, index_limit);
  } else {
    run_correlation_backward(
        HostLaunch{}, batched_or_undefined(grad_input1),
        batched_or_undefined(grad_input2), as_batched(grad_output),
        as_batched(input1), as_batched(input2), params, index_limit);
  }
  return {grad_input1, grad_input2, grad_offset};
}

// Kernels with the defects the harness exists to find, for its own tests:
// threads that return while the others wait at a barrier, a read of shared
// memory that another thread writes without a barrier between, and (for the
// sanitized build) a shared-memory write one past the end and a 32-bit
// index computation that overflows.
__global__ void early_return_kernel(float* out) {
  if (threadIdx.x == 0) {
    return;
  }
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

__global__ void missing_barrier_kernel(float* out) {
  float* values = dynamic_shared_memory<float>();
  values[threadIdx.x] = static_cast<float>(threadIdx.x);
  out[threadIdx.x] = values[(threadIdx.x + 1) % blockDim.x];
}

__global__ void shared_overflow_kernel(float* out) {
  float* values = dynamic_shared_memory<float>();
  values[threadIdx.x + 1] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = values[threadIdx.x];
}

__global__ void index_overflow_kernel(float* out) {
  int index = std::numeric_limits<int>::max() - static_cast<int>(blockDim.x) / 2;
  index += static_cast<int>(threadIdx.x);
  out[threadIdx.x] = static_cast<float>(index % 7);
}

at::Tensor run_defective_kernel(const std::string& name, int64_t threads) {
  auto out = at::zeros({threads}, at::kFloat);
  if (name == "early_return") {
    cuda_on_cpu::launch(&early_return_kernel, 1, threads, 0, out.data_ptr<float>());
  } else if (name == "missing_barrier") {
    cuda_on_cpu::launch(
        &missing_barrier_kernel, 1, threads, threads * sizeof(float), out.data_ptr<float>());
  } else if (name == "shared_overflow") {
    cuda_on_cpu::launch(
        &shared_overflow_kernel, 1, threads, threads * sizeof(float), out.data_ptr<float>());
  } else if (name == "index_overflow") {
    cuda_on_cpu::launch(&index_overflow_kernel, 1, threads, 0, out.data_ptr<float>());
  } else {
    TORCH_CHECK(false, "cuda_on_cpu: unknown kernel ", name);
  }
  return out;
}

void set_schedule(const std::string& order, int64_t seed) {
  auto& schedule = cuda_on_cpu::BlockRunner::get().schedule;
  if (order == "forward") {
    schedule.order = cuda_on_cpu::Order::kForward;
  } else if (order == "reversed") {
    schedule.order = cuda_on_cpu::Order::kReversed;
  } else if (order == "shuffled") {
    schedule.order = cuda_on_cpu::Order::kShuffled;
  } else {
    TORCH_CHECK(false, "cuda_on_cpu: unknown schedule ", order);
  }
  schedule.seed = static_cast<uint64_t>(seed);
}

std::vector<std::tuple<std::string, std::string, std::string, int64_t>> get_coverage() {
  name_all_kernels();
  std::vector<std::tuple<std::string, std::string, std::string, int64_t>> rows;
  for (const auto& [key, count] : coverage) {
    rows.emplace_back(std::get<0>(key), std::get<1>(key), std::get<2>(key), count);
  }
  return rows;
}

} // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("correlation", &correlation);
  m.def("correlation_backward", &correlation_backward);
  m.def("set_schedule", &set_schedule);
  m.def("set_index_limit", [](int64_t limit) { index_limit = limit; });
  m.def("get_index_limit", [] { return index_limit; });
  m.def("coverage", &get_coverage);
  m.def("run_defective_kernel", &run_defective_kernel);
  m.def("reset_coverage", [] {
    for (auto& entry : coverage) entry.second = 0;
  });
}
