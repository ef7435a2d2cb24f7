"""``torch.compile`` entries that upstream keeps in lists inside torch.

Two list entries of the upstream patch, made at run time by the preview:

* ``torch/_dynamo/trace_rules.py``: ``"torch._C._nn.correlation"`` (which is
  ``F.correlation``) in ``torch_c_binding_in_graph_functions``, so that Dynamo
  puts the call into the graph (as it does for ``torch._C._nn`` functions
  such as ``conv_depthwise3d``) instead of breaking the graph on an unknown C
  function.
* ``torch/_inductor/decomposition.py``: ``aten.correlation`` in
  ``decomps_to_exclude``, so that Inductor keeps the operator, which it calls
  as an extern kernel (like conv2d), although the core ATen decomposition
  table holds its decomposition (``_decomp.py``).
* ``torch/_inductor/lowering.py``: the explicit fallbacks
  ``make_fallback(aten.correlation, warn=False)`` and
  ``make_fallback(aten.correlation_backward)``. Without them Inductor makes
  implicit ones, which (a) assert when the ``CI`` environment variable is set,
  because a decomposition exists, and (b) in the backward graph force
  contiguous inputs, copying channels_last ones that the kernels read as they
  are.

* ``torch/_subclasses/fake_tensor.py``: ``aten.correlation.default`` and
  ``aten.correlation.out`` in ``FakeTensorMode._cpp_meta_supports_symint``.
  FakeTensor with symbolic sizes otherwise prefers the operator's Python
  decomposition (``_decomp.py``), which computes shapes but checks nothing,
  over the C++ Meta kernel; with the entry, fake tensors run the same checks
  as the real kernels (the Meta kernel is written over SymInt).

The modules are heavy and torch imports them lazily, so the entries are made
right after their import (or at once if they were imported already).
"""

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable

import torch

__all__ = ["activate"]

# correlation_backward has no Python binding (torchgen skips *_backward).
_BINDINGS = ("torch._C._nn.correlation",)


class _AfterImport(importlib.abc.MetaPathFinder):
    # Runs `callback(module)` once `name` has been executed by the regular
    # import machinery; the finder removes itself on first use.
    def __init__(self, name: str, callback: Callable) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module
        callback = self.callback

        def exec_module_then_callback(module):
            exec_module(module)
            callback(module)

        spec.loader.exec_module = exec_module_then_callback
        return spec


def _after_import(name: str, callback: Callable) -> None:
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    if module is not None and not getattr(spec, "_initializing", False):
        callback(module)
    else:
        sys.meta_path.insert(0, _AfterImport(name, callback))


def _register_trace_rules(trace_rules) -> None:
    for name in _BINDINGS:
        trace_rules.torch_c_binding_in_graph_functions.setdefault(
            name, trace_rules.TorchInGraphFunctionVariable
        )
    trace_rules.get_torch_obj_rule_map.cache_clear()


def _exclude_from_inductor(decomposition) -> None:
    table = decomposition.decompositions
    packet = torch.ops.aten.correlation
    for op in [op for op in table if getattr(op, "overloadpacket", None) is packet]:
        del table[op]


def _register_inductor_fallbacks(lowering) -> None:
    aten = torch.ops.aten
    if aten.correlation.default not in lowering.lowerings:
        lowering.make_fallback(aten.correlation, warn=False)
    if aten.correlation_backward.default not in lowering.lowerings:
        lowering.make_fallback(aten.correlation_backward)


def _register_fake_tensor_symint_meta(fake_tensor) -> None:
    supported = fake_tensor.FakeTensorMode._cpp_meta_supports_symint
    for op in (torch.ops.aten.correlation.default, torch.ops.aten.correlation.out):
        supported[op] = True


_ACTIVE = False


def activate() -> None:
    global _ACTIVE
    if _ACTIVE:
        return
    _ACTIVE = True
    _after_import("torch._dynamo.trace_rules", _register_trace_rules)
    _after_import("torch._subclasses.fake_tensor", _register_fake_tensor_symint_meta)
    _after_import("torch._inductor.decomposition", _exclude_from_inductor)
    # After the decomposition's exclusion: make_fallback refuses an operator
    # that Inductor's own decomposition table still holds.
    _after_import("torch._inductor.lowering", _register_inductor_fallbacks)
