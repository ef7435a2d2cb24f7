"""Step 6 of tools/check_patch.py: import the patched Python files for real.

Run as ``python tools/check_patch_child.py OVERLAY SCHEMAS_JSON`` with the
overlay ``torch`` package (symlinks to the installed one, the patched files
real) first on ``PYTHONPATH``. The wheel's library has neither
``aten::correlation`` nor the ``torch._C._nn.correlation`` binding, so just
before the first patched module that needs them runs, this defines the
schemas (as torchgen parsed them from the patched yaml) and puts a stand-in
for the binding on ``torch._C._nn`` (the docstring ``_add_docstr`` attaches
lands on it). Prints one ``CHILD-RESULTS <json>`` line.
"""

import importlib.abc
import importlib.util
import inspect
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))

OVERLAY, SCHEMAS = sys.argv[1], json.loads(sys.argv[2])
NEEDS_OPS = {
    "torch.nn.functional",
    "torch._decomp",
    "torch._decomp.decompositions",
    "torch._inductor.decomposition",
    "torch._inductor.lowering",
    "torch.utils.flop_counter",
}
LIBS = []
results = []


def record(name, ok, detail=""):
    results.append((name, bool(ok), detail))


def correlation_binding(*args, **kwargs):
    """Stand-in for torch._C._nn.correlation (the wheel has no such binding)."""
    return sys.modules["torch"].ops.aten.correlation(*args, **kwargs)


def install_ops():
    torch_c = sys.modules["torch"]._C
    lib = torch_c._dispatch_library("FRAGMENT", "aten", "", "check_patch", 0)
    for schema in SCHEMAS:
        lib.define(schema, "", [])
    LIBS.append(lib)
    torch_c._nn.correlation = correlation_binding
    real_add_docstr = torch_c._add_docstr

    def add_docstr(obj, doc):
        if obj is correlation_binding:
            obj.__doc__ = doc
            return obj
        return real_add_docstr(obj, doc)

    torch_c._add_docstr = add_docstr


class DefineOpsFirst(importlib.abc.MetaPathFinder):
    """Installs our schemas and binding before the first patched module needing them runs."""

    def find_spec(self, name, path, target=None):
        if name not in NEEDS_OPS or LIBS:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        run_module = spec.loader.exec_module

        def exec_module(module):
            if not LIBS:
                install_ops()
            run_module(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, DefineOpsFirst())

import torch
import torch.nn.functional as F
from torch.overrides import get_overridable_functions, get_testing_overrides

record(
    "import torch from the overlay", torch.__file__.startswith(OVERLAY), torch.__file__
)
record(
    "schemas and binding installed before the patched modules ran",
    LIBS,
    f"{len(SCHEMAS)} schemas",
)
# The block of torch_correlation/functional.py documents the torch._C._nn
# binding with _add_docstr (an older layout defined a Python function).
binding = getattr(F, "correlation", None)
record(
    "F.correlation comes from the patched torch/nn/functional.py, documented",
    binding is not None
    and "cost volume" in (binding.__doc__ or "")
    and (
        binding is correlation_binding
        or inspect.getsourcefile(binding).startswith(OVERLAY)
    ),
    "the torch._C._nn binding"
    if binding is correlation_binding
    else "a Python function",
)

# test_overrides: every overridable function has a testing override ...
testing = get_testing_overrides()
untested = sorted(
    f"{ns.__name__}.{f.__name__}"
    for ns, funcs in get_overridable_functions().items()
    for f in funcs
    if f not in testing and f.__name__ not in {"sample_functional", "autocast"}
)
record(
    "test_overrides coverage: every overridable function has an override",
    not untested,
    ", ".join(untested),
)
# ... and the lambda takes the schema's arguments (positional, then keyword-only)
schema = next(s for s in SCHEMAS if s.startswith("correlation("))
params = [
    p.strip().split(" ")[-1].split("=")[0]
    for p in schema[len("correlation(") : schema.index(") ->")].split(",")
]
override = testing.get(F.correlation)
spec = inspect.getfullargspec(override) if override else None
got = (spec.args + ["*"] + spec.kwonlyargs) if spec else None
record(
    "get_testing_overrides() entry of F.correlation takes the schema's arguments",
    got == params,
    f"{got} vs {params}",
)

from torch.nn.modules.correlation import Correlation

record(
    "torch.nn.Correlation exported",
    getattr(torch.nn, "Correlation", None) is Correlation
    and "Correlation" in torch.nn.modules.__all__
    and issubclass(Correlation, torch.nn.Module),
)

# The decomposition against the test suite's independent reference.
import torch._decomp
from correlation_reference import correlation_reference

aten = torch.ops.aten
decomp = torch._decomp.decomposition_table.get(aten.correlation.default)
record("decomposition registered for aten.correlation.default", decomp is not None)
if decomp is not None:
    bad = []
    gen = torch.Generator().manual_seed(0)

    def pair(v):
        return [v, v] if isinstance(v, int) else list(v)

    for shape, md, kw in [
        ((1, 4, 5, 6), 1, {}),
        ((4, 5, 4), (2, 1), dict(displacement_stride=(2, 1), groups=2, scale=0.5)),
        (
            (1, 2, 6, 5),
            (0, 0),
            dict(
                min_displacement=(-1, -2),
                kernel_size=(3, 2),
                stride=2,
                padding=1,
                dilation=(1, 2),
            ),
        ),
        # Descending orders: GwcNet's disparities, and a range walked from
        # the top that is not a multiple of the step.
        (
            (1, 4, 3, 7),
            (0, 0),
            dict(min_displacement=(0, -4), displacement_stride=(1, -1), groups=2),
        ),
        ((1, 2, 6, 5), (2, 1), dict(min_displacement=-1, displacement_stride=-2)),
    ]:
        x1 = torch.randn(shape, dtype=torch.float64, generator=gen)
        x2 = torch.randn(shape, dtype=torch.float64, generator=gen)
        args = dict(
            min_displacement=pair(kw["min_displacement"])
            if "min_displacement" in kw
            else None,
            groups=kw.get("groups", 1),
            scale=kw.get("scale", 1.0),
            **{
                k: pair(kw.get(k, d))
                for k, d in (
                    ("kernel_size", 1),
                    ("stride", 1),
                    ("padding", 0),
                    ("dilation", 1),
                    ("displacement_stride", 1),
                )
            },
        )
        try:
            got = decomp(x1, x2, pair(md), **args)
        except Exception as e:
            bad.append(f"{shape} {kw}: {type(e).__name__}: {e}")
            continue
        want = correlation_reference(x1, x2, md, **kw)
        if got.shape != want.shape or not torch.allclose(
            got, want, rtol=1e-10, atol=1e-10
        ):
            bad.append(f"{shape} {kw}: shapes {tuple(got.shape)} / {tuple(want.shape)}")
    record(
        "decomposition equals test/correlation_reference.py", not bad, "\n".join(bad)
    )
    # With offset=: a constant integer offset (u, v) is the integer
    # correlation with the displacement range shifted by (v, u).
    x1 = torch.randn(1, 4, 5, 6, dtype=torch.float64, generator=gen)
    x2 = torch.randn(1, 4, 5, 6, dtype=torch.float64, generator=gen)
    offset = torch.empty(1, 2, 5, 6, dtype=torch.float64)
    offset[:, 0], offset[:, 1] = 2.0, -1.0
    detail = ""
    try:
        got = decomp(
            x1,
            x2,
            [1, 2],
            offset=offset,
            min_displacement=[-1, 0],
            kernel_size=[3, 3],
            stride=[1, 1],
            padding=[1, 1],
            dilation=[1, 1],
            displacement_stride=[1, 1],
            groups=2,
            scale=0.5,
        )
        want = correlation_reference(
            x1,
            x2,
            (0, 4),
            min_displacement=(-2, 2),
            kernel_size=3,
            padding=1,
            groups=2,
            scale=0.5,
        )
        ok = got.shape == want.shape and torch.allclose(
            got, want, rtol=1e-10, atol=1e-10
        )
        detail = f"shapes {tuple(got.shape)} / {tuple(want.shape)}"
    except Exception as e:
        ok, detail = False, f"{type(e).__name__}: {e}"
    record(
        "decomposition with an integer offset equals the shifted reference",
        ok,
        detail,
    )

record(
    "aten.correlation in core_aten_decompositions()",
    aten.correlation.default in torch._decomp.core_aten_decompositions(),
)
import torch._inductor.decomposition as inductor_decomp
from torch._inductor import lowering

record(
    "Inductor keeps the native kernel (aten.correlation not in its decompositions)",
    aten.correlation.default not in inductor_decomp.decompositions,
)
record(
    "Inductor falls back to the native kernels (aten.correlation{,_backward} have lowerings)",
    aten.correlation.default in lowering.lowerings
    and aten.correlation_backward.default in lowering.lowerings,
)

from torch._dynamo import trace_rules

record(
    "trace_rules lists torch._C._nn.correlation",
    "torch._C._nn.correlation" in trace_rules.torch_c_binding_in_graph_functions,
)

from torch.utils.flop_counter import flop_registry

record(
    "flop_registry has aten.correlation and aten.correlation_backward",
    aten.correlation in flop_registry and aten.correlation_backward in flop_registry,
)

import torch.testing._internal.common_methods_invocations as cmi

ops = [op for op in cmi.op_db if op.name == "nn.functional.correlation"]
detail = ""
ok = len(ops) == 1 and ops[0].op is F.correlation
if ok:
    samples = list(ops[0].sample_inputs("cpu", torch.float64, requires_grad=True))

    def valid(s):
        # Without an offset both inputs have one shape; with one, input2 has
        # input1's rank, batch size and channels, and the offset 2 channels.
        x1, x2, offset = s.input, s.args[0], s.kwargs.get("offset")
        if not isinstance(x2, torch.Tensor):
            return False
        if offset is None:
            return x2.shape == x1.shape
        return (
            x2.shape[:-2] == x1.shape[:-2]
            and offset.dim() == x1.dim()
            and offset.shape[-3] == 2
        )

    with_offset = sum(s.kwargs.get("offset") is not None for s in samples)
    ok = bool(samples) and with_offset > 0 and all(valid(s) for s in samples)
    detail = f"{len(samples)} samples, {with_offset} with an offset"
record("OpInfo nn.functional.correlation in op_db, samples generated", ok, detail)

import torch.testing._internal.common_modules as cm

infos = [m for m in cm.module_db if m.module_cls is Correlation]
ok = len(infos) == 1 and bool(
    list(
        infos[0].module_inputs_func(
            infos[0],
            device="cpu",
            dtype=torch.float64,
            requires_grad=False,
            training=False,
        )
    )
)
record("ModuleInfo torch.nn.Correlation in module_db, inputs generated", ok)

print("CHILD-RESULTS " + json.dumps(results))
