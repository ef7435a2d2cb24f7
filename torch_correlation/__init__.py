"""Preview of ``torch.nn.functional.correlation`` on stock PyTorch.

Importing this package loads the compiled extension, which registers
``aten::correlation`` and ``aten::correlation_backward`` from the code that
torch's own codegen generated for ``native_functions_patch.yaml`` and
``derivatives_patch.yaml`` (schemas; CPU, CUDA and Meta kernels; autograd,
tracing and functionalization) together with the functorch batching rules
(``aten_functorch/``) and the Autocast kernels (``csrc/autocast_correlation.cpp``).
It then puts the Python API where the upstream patch puts it: the generated
binding in ``torch._C._nn``, ``torch.nn.functional.correlation`` (that binding
with its docstring), ``torch.nn.Correlation``, and the list entries of the
PyTorch 2 stack (decomposition, Dynamo trace rules, Inductor fallbacks, flop
counter).

"""

import torch
import torch.nn.functional

from . import _C


def _install_bindings() -> None:
    # The generated binding lives in _C._nn; torch keeps these in torch._C._nn.
    from torch.jit import _builtins

    for name in dir(_C._nn):
        if name.startswith("_") or hasattr(torch._C._nn, name):
            continue
        binding = getattr(_C._nn, name)
        setattr(torch._C._nn, name, binding)
        # TorchScript maps every function of torch._C._nn to the aten::
        # operator of the same name (register_all in torch/jit/_builtins.py),
        # but `import torch` has already built that table; map the new
        # binding the way that loop does for the in-tree one.
        _builtins._builtin_ops.append((binding, "aten::" + name))
        if _builtins._builtin_table is not None:
            _builtins._builtin_table[id(binding)] = "aten::" + name


_install_bindings()

from . import _compile, _decomp, _flop_counter
from .functional import correlation
from .modules import Correlation

__all__ = ["Correlation", "correlation"]

if not hasattr(torch.nn.functional, "correlation"):
    torch.nn.functional.correlation = correlation
if not hasattr(torch.nn, "Correlation"):
    torch.nn.Correlation = Correlation
    torch.nn.modules.Correlation = Correlation
_decomp.activate()
_compile.activate()
