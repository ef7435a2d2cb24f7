// Definitions that the generated autograd and Python-binding code calls and
// that an in-tree build links from libtorch_cpu / libtorch_python, where they
// are internal (not exported from the wheel's shared libraries). The preview
// defines them here, with hidden visibility, on top of exported API.

#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/generated/VariableType.h>
#include <torch/csrc/utils/python_arg_parser.h>

namespace torch::autograd::VariableType {

// The generated autograd kernels unwrap every tensor argument through these.
const at::Tensor& unpack(const at::Tensor& t, const char* name, int pos) {
  TORCH_CHECK(
      t.defined(),
      "expected a defined Tensor for argument #",
      pos,
      " '",
      name,
      "', but got None (an undefined Tensor in C++)");
  return t;
}

at::Tensor& unpack(at::Tensor& t, const char* name, int pos) {
  TORCH_CHECK(
      t.defined(),
      "expected a defined Tensor for argument #",
      pos,
      " '",
      name,
      "', but got None (an undefined Tensor in C++)");
  return t;
}

}  // namespace torch::autograd::VariableType

namespace torch {

// __torch_function__ handling of the generated Python binding: look the
// public function up on `torch_api` and hand the overloaded arguments to the
// exported dispatcher of __torch_function__.
PyObject* handle_torch_function(
    PythonArgs& r,
    PyObject* self,
    PyObject* args,
    PyObject* kwargs,
    PyObject* torch_api,
    const char* module_name,
    const char* func_name_override) {
  const std::string name =
      func_name_override ? func_name_override : r.get_func_name();
  THPObjectPtr api_function(PyObject_GetAttrString(torch_api, name.c_str()));
  if (!api_function) {
    throw python_error();
  }
  const Py_ssize_t n_args = args ? PyTuple_GET_SIZE(args) : 0;
  const Py_ssize_t offset = self ? 1 : 0;
  THPObjectPtr all_args(PyTuple_New(n_args + offset));
  if (!all_args) {
    throw python_error();
  }
  if (self) {
    PyTuple_SET_ITEM(all_args.get(), 0, Py_NewRef(self));
  }
  for (Py_ssize_t i = 0; i < n_args; ++i) {
    PyTuple_SET_ITEM(
        all_args.get(), i + offset, Py_NewRef(PyTuple_GET_ITEM(args, i)));
  }
  return handle_torch_function_no_python_arg_parser(
      r.overloaded_args,
      all_args.get(),
      kwargs,
      name.c_str(),
      api_function.get(),
      module_name);
}

PyObject* handle_torch_function(
    PythonArgs& r,
    PyObject* args,
    PyObject* kwargs,
    PyObject* torch_api,
    const char* module_name,
    const char* func_name_override) {
  return handle_torch_function(
      r, nullptr, args, kwargs, torch_api, module_name, func_name_override);
}

}  // namespace torch
