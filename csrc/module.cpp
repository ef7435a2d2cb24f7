// The preview extension module torch_correlation._C.
//
// Loading the library runs the static registrations of the generated code
// (schemas, CPU/CUDA/autograd/tracer kernels). The module itself carries the
// generated Python binding of the `python_module: nn` functions in its `_nn`
// attribute; torch_correlation/__init__.py installs them into torch._C._nn,
// where an in-tree build puts them.

#include <Python.h>
#include <torch/csrc/Exceptions.h>

namespace torch::autograd {
// python_nn_functions.cpp generated from our yaml, renamed at compile time
// so it does not clash with torch's own initNNFunctions.
void torch_correlation_initNNFunctions(PyObject* module);
}  // namespace torch::autograd

PyMODINIT_FUNC PyInit__C() {
  static PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "torch_correlation._C",
      "Preview build of aten::correlation (generated registrations and kernels).",
      -1,
      nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) {
    return nullptr;
  }
  HANDLE_TH_ERRORS
  torch::autograd::torch_correlation_initNNFunctions(module);
  return module;
  END_HANDLE_TH_ERRORS
}
