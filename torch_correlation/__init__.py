"""Preview of ``torch.nn.functional.correlation`` on stock PyTorch.

Importing this package loads the compiled extension, which registers
``aten::correlation`` and ``aten::correlation_backward`` (schemas, CPU/CUDA
kernels, autograd, tracing) from the code that torch's own codegen generated
for ``native_functions_patch.yaml`` and ``derivatives_patch.yaml``. It then
puts the Python API where the upstream patch puts it:
``torch.nn.functional.correlation`` (and ``torch._C._nn.correlation``, its
generated binding).
"""

import torch
import torch.nn.functional

from . import _C
from .functional import correlation

__all__ = ["correlation"]


def _install() -> None:
    # The generated binding lives in _C._nn; torch keeps these in torch._C._nn.
    for name in dir(_C._nn):
        if not name.startswith("_") and not hasattr(torch._C._nn, name):
            setattr(torch._C._nn, name, getattr(_C._nn, name))
    if not hasattr(torch.nn.functional, "correlation"):
        torch.nn.functional.correlation = correlation


_install()

# --- PyTorch 2 stack and transforms -----------------------------------------
# Meta kernels (FakeTensor, torch.compile, export), the core ATen
# decomposition (export's run_decompositions, ONNX), Dynamo/Inductor list
# entries, vmap batching rules and nn.Correlation. The Autocast kernels are
# C++ (csrc/autocast_correlation.cpp) and come with _C.
from . import _compile, _decomp, _meta, _vmap  # noqa: E402
from .modules import Correlation  # noqa: E402

_meta.activate()
_decomp.activate()
_compile.activate()
_vmap.activate()
if not hasattr(torch.nn, "Correlation"):
    torch.nn.Correlation = Correlation
    torch.nn.modules.Correlation = Correlation
# TorchScript maps Python callables to aten:: operators through a table it
# builds once, on first use; entries made after that need registering. The
# wrapper maps to the operator itself (upstream: an entry in _builtin_ops of
# torch/jit/_builtins.py), as TorchScript cannot compile its keyword-only
# arguments with defaults.
torch.jit._builtins._register_builtin(torch._C._nn.correlation, "aten::correlation")
torch.jit._builtins._register_builtin(torch.nn.functional.correlation, "aten::correlation")
