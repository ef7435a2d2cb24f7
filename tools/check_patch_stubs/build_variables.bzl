# STUB (tools/check_patch_stubs/): the wheel does not ship build_variables.bzl.
# The three lists the patch adds to, trimmed, in upstream's layout.

aten_native_source_codegen_list = [
    "aten/src/ATen/native/cpu/Activation.cpp",
    "aten/src/ATen/native/cpu/GridSamplerKernel.cpp",
    "aten/src/ATen/native/cpu/HistogramKernel.cpp",
]

aten_native_source_non_codegen_list = [
    "aten/src/ATen/native/Activation.cpp",
    "aten/src/ATen/native/Correlation.cpp",
    "aten/src/ATen/native/GridSampler.cpp",
    "aten/src/ATen/native/Histogram.cpp",
]

aten_cuda_cu_source_list = [
    "aten/src/ATen/native/cuda/Activation.cpp",
    "aten/src/ATen/native/cuda/GridSampler.cpp",
]
