# Owner(s): ["module: nn"]

"""F.correlation in the PyTorch 2 stack and the other program transforms.

What each class exercises:

* TestCorrelationMeta: the C++ Meta kernels (``Meta:`` entries of the yaml,
  SpatialCorrelation.cpp): shape, dtype, memory format of both ops on meta
  tensors, the same errors as the real kernels (also for every dtype torch
  has, under FakeTensorMode too), FakeTensor with symbolic (dynamic) sizes, and
  ``opcheck`` (schema, autograd registration, FakeTensor, AOT dispatch with
  dynamic shapes); with ``offset=`` too (input2 of its own size, the offset's
  sizes, dtype and device errors, symbolic sizes).
* TestCorrelationBinding: F.correlation is the generated binding
  ``torch._C._nn.correlation`` with its docstring (argument parsing, int[2]
  expansion, ``__torch_function__``), and TorchScript maps it to the operator
  with no registration of ours (in a fresh interpreter).
* TestCorrelationDecomposition: the decomposition into core ATen
  (torch_correlation/_decomp.py) against the kernel for every argument, in
  float64/float32/bfloat16, channels_last, unbatched and empty inputs; its
  traced graph only holds core ATen operators and no per-displacement copy.
  With ``offset=`` (grid_sampler_2d sampling): forward and autograd gradients
  against the kernel's, NaN/inf offsets included, and a constant integer
  offset against the reference with the shifted displacement range.
* TestCorrelationCompile: ``torch.compile(fullgraph=True)`` (Inductor) of a
  module using F.correlation, forward and backward, static and
  ``dynamic=True``; the generated code calls the native kernel (also with
  ``offset=``).
* TestCorrelationExport: ``torch.export.export`` keeps ``aten.correlation``;
  ``run_decompositions()`` leaves only core ATen and still matches, also
  with dynamic dimensions and with ``offset=``.
* TestCorrelationONNX: ``torch.onnx.export(..., dynamo=True)`` of a PWC-style
  block run by onnxruntime (skipped when onnx/onnxscript/onnxruntime are not
  installed).
* TestCorrelationTorchScript: ``torch.jit.script`` of F.correlation and of
  nn.Correlation, ``torch.jit.trace``.
* TestCorrelationVmap: the functorch C++ batching rules
  (aten_functorch/BatchRulesSpatialCorrelation.cpp) of both operators against a
  Python loop for every in_dims combination (input1, input2, offset), under
  ``torch.func.grad`` (per-sample gradients), ``jacrev`` and ``jacfwd``.
* TestCorrelationAutocast: the Autocast kernels (csrc/autocast_correlation.cpp):
  bfloat16 under CPU autocast (the offset cast with the inputs), float16
  under CUDA autocast (needs CUDA).
* TestCorrelationModule: nn.Correlation (torch_correlation/modules.py) and its
  ModuleInfo (patch/moduleinfo.py).
* TestCorrelationFlopCounter: ``FlopCounterMode`` counts the forward and the
  backward, with and without an offset (torch_correlation/_flop_counter.py).
"""

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

import torch
import torch.nn.functional as F
import torch_correlation
from torch.testing._internal.common_utils import (
    instantiate_parametrized_tests,
    parametrize,
    run_tests,
    TestCase,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correlation_reference import (
    backward_args,
    CALLS,
    correlation_module_info,
    correlation_reference,
)

aten = torch.ops.aten
HAS_CUDA = torch.cuda.is_available()

# Descending displacement orders (negative displacement_stride) with ranges
# that are not a multiple of the step (they descend from the top: {3, 1, -1}
# and {2, -1}), through a kernel window.
DESCENDING_WINDOW = dict(
    max_displacement=(3, 2),
    min_displacement=(-2, -2),
    displacement_stride=(-2, -3),
    kernel_size=2,
    padding=(1, 0),
)

# (shape, kwargs): together they exercise every argument of the operator.
CASES = [
    ((2, 4, 6, 7), dict(max_displacement=2)),
    ((1, 3, 7, 6), CALLS["window"]),
    (
        (2, 4, 8, 8),
        dict(max_displacement=3, displacement_stride=2, groups=2, scale=0.25),
    ),
    ((1, 2, 9, 8), CALLS["geometry"]),
    ((1, 6, 5, 9), CALLS["one_sided_groups"]),
    ((2, 2, 7, 7), CALLS["strided_range"]),
    ((4, 5, 5), CALLS["sparse_window"]),
    ((1, 1, 3, 3), CALLS["beyond_image"]),
    (
        (1, 2, 4, 4),
        dict(max_displacement=(6, 0), min_displacement=(4, 0), stride=(1, 2)),
    ),
    # Descending orders: GwcNet's disparities, DESCENDING_WINDOW and the
    # symmetric range.
    (
        (1, 4, 5, 9),
        dict(
            max_displacement=(0, 0),
            min_displacement=(0, -4),
            displacement_stride=(1, -1),
            groups=2,
        ),
    ),
    ((2, 3, 7, 8), DESCENDING_WINDOW),
    ((3, 6, 7), dict(max_displacement=2, displacement_stride=(-1, 2))),
]


def split(kwargs):
    kwargs = dict(kwargs)
    return kwargs.pop("max_displacement"), kwargs


def correlation_backward(
    grad, x1, x2, max_displacement, output_mask, offset=None, **kwargs
):
    """aten.correlation_backward (all arguments positional) with F's defaults.

    A two-element ``output_mask`` asks for the input gradients only and
    returns those two; three elements include the offset's gradient."""
    mask = list(output_mask) + [False] * (3 - len(output_mask))
    grads = aten.correlation_backward(
        grad, x1, x2, offset, *backward_args(max_displacement, kwargs), mask
    )
    return grads[: len(output_mask)]


def make_inputs(shape, dtype=torch.float64, seed=0, **kw):
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    x2 = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    return x1.requires_grad_(kw.get("requires_grad", False)), x2.requires_grad_(
        kw.get("requires_grad", False)
    )


# (input1 shape, input2 shape, kwargs) of calls with an offset: input2 of
# its own size (also of height or width 1), groups, kernel windows, output
# strides and dilation, descending orders, unbatched.
OFFSET_CASES = [
    ((2, 4, 6, 7), (2, 4, 5, 9), dict(max_displacement=2)),
    ((1, 3, 7, 6), (1, 3, 7, 6), CALLS["window"]),
    (
        (2, 4, 8, 8),
        (2, 4, 4, 4),
        dict(max_displacement=3, displacement_stride=2, groups=2, scale=0.25),
    ),
    ((1, 2, 9, 8), (1, 2, 6, 11), CALLS["geometry"]),
    (
        (1, 6, 5, 9),
        (1, 6, 1, 9),
        dict(
            max_displacement=(0, 0),
            min_displacement=(0, -3),
            displacement_stride=(1, -1),
            groups=3,
        ),
    ),
    ((4, 5, 5), (4, 3, 7), CALLS["sparse_window"]),
    ((2, 3, 7, 8), (2, 3, 7, 1), DESCENDING_WINDOW),
]


def offset_shape(shape, kwargs):
    """The offset's shape for input1 of `shape`: the output's, 2 channels."""
    max_d, kw = split(kwargs)
    x = torch.empty(shape, device="meta")
    out = F.correlation(x, x, max_d, **kw)
    return (*out.shape[:-3], 2, *out.shape[-2:])


def make_offset(shape, dtype=torch.float64, seed=0, nonfinite=False):
    """An offset in pixels: an integer in [-3, 2] plus a fraction in [0.2, 0.8].

    The fractions keep every sample away from the integer positions, where
    bilinear interpolation has kinks (one-sided derivatives). `nonfinite`
    puts NaN, +inf and -inf components at three locations and a huge finite
    one (which only samples zeros) at a fourth."""
    gen = torch.Generator().manual_seed(seed)
    whole = torch.randint(-3, 3, shape, generator=gen).to(torch.float64)
    offset = whole + 0.2 + 0.6 * torch.rand(shape, generator=gen, dtype=torch.float64)
    if nonfinite:
        offset[..., 0, 0, 1] = float("nan")
        offset[..., 1, -1, 0] = float("inf")
        offset[..., 0, 1, -1] = -float("inf")
        offset[..., 1, -1, -1] = 1e6
    return offset.to(dtype)


def make_offset_inputs(shape1, shape2, kwargs, dtype=torch.float64, seed=0, **kw):
    """input1, input2 and an offset (see make_offset) for a call of OFFSET_CASES."""
    x1 = make_inputs(shape1, dtype, seed=seed)[0]
    x2 = make_inputs(shape2, dtype, seed=seed + 1)[0]
    return x1, x2, make_offset(offset_shape(shape1, kwargs), dtype, seed, **kw)


# The batch size of the vmap tests.
VMAP_BATCH = 3


def _first_input(shape, seed):
    return make_inputs(shape, seed=seed)[0]


def vmap_input(shape, dim, seed, make=_first_input):
    """A tensor of ``shape`` (``make(shape, seed=seed)``) with a dimension of
    size VMAP_BATCH inserted at ``dim`` for vmap (none where ``dim`` is None)."""
    if dim is not None:
        shape = list(shape)
        shape.insert(dim, VMAP_BATCH)
    return make(tuple(shape), seed=seed)


def vmap_sample(t, dim, i):
    """Sample i of a vmap argument batched along ``dim`` (None: shared)."""
    return t if dim is None else t.select(dim, i)


class PWCBlock(torch.nn.Module):
    """conv -> correlation -> leaky relu -> conv, as in one PWC-Net level."""

    def __init__(self, channels=8, max_displacement=2):
        super().__init__()
        self.features = torch.nn.Conv2d(3, channels, 3, padding=1)
        self.corr = torch.nn.Correlation(max_displacement, scale=1.0 / channels)
        d = (2 * max_displacement + 1) ** 2
        self.head = torch.nn.Conv2d(d, 2, 3, padding=1)

    def forward(self, image1, image2):
        cost = self.corr(self.features(image1), self.features(image2))
        return self.head(F.leaky_relu(cost, 0.1))


class CorrModule(torch.nn.Module):
    def forward(self, x1, x2):
        out = F.correlation(x1, x2, 2, kernel_size=3, padding=1, scale=0.5)
        return torch.tanh(out) * 2


class GwcModule(torch.nn.Module):
    """GwcNet's group-wise volume (disparity d in channel g * D + d): the
    descending horizontal order."""

    def forward(self, left, right):
        disparities, groups = 4, 3
        out = F.correlation(
            left,
            right,
            (0, 0),
            min_displacement=(0, 1 - disparities),
            displacement_stride=(1, -1),
            groups=groups,
            scale=groups / left.shape[1],
        )
        return torch.tanh(out) * 2


class OffsetModule(torch.nn.Module):
    """A RAFT-style lookup: input2 (a coarser level) sampled around the flow."""

    def forward(self, x1, x2, flow):
        out = F.correlation(
            x1, x2, 1, offset=flow, kernel_size=3, padding=1, groups=2, scale=0.5
        )
        return torch.tanh(out) * 2


def core_aten_violations(gm):
    """call_function targets of a graph that are not core ATen operators."""
    bad = set()
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        target = node.target
        if isinstance(target, torch._ops.OpOverload):
            if target.namespace == "aten" and torch.Tag.core not in target.tags:
                bad.add(str(target))
        elif target.__module__ not in ("_operator", "operator"):
            bad.add(str(target))
    return bad


def graph_targets(gm):
    return {node.target for node in gm.graph.nodes if node.op == "call_function"}


class TestCorrelationMeta(TestCase):
    """Meta kernels: shapes, strides, errors, FakeTensor, dynamic shapes."""

    def test_meta_matches_kernel(self):
        # Output shape/dtype/strides of the Meta kernels equal the CPU kernel's,
        # for contiguous and channels_last inputs, and the backward's
        # output_mask is honoured.
        for shape, kwargs in CASES:
            max_d, kw = split(kwargs)
            for channels_last in (False, True):
                if channels_last and len(shape) != 4:
                    continue
                x1, x2 = make_inputs(shape, torch.float32)
                if channels_last:
                    x1 = x1.contiguous(memory_format=torch.channels_last)
                    x2 = x2.contiguous(memory_format=torch.channels_last)
                real = F.correlation(x1, x2, max_d, **kw)
                fake = F.correlation(x1.to("meta"), x2.to("meta"), max_d, **kw)
                self.assertEqual(fake.shape, real.shape)
                self.assertEqual(fake.dtype, real.dtype)
                self.assertEqual(fake.stride(), real.stride())
                grad = torch.randn_like(real)
                for mask in ([True, True], [True, False], [False, True]):
                    real_grads = correlation_backward(grad, x1, x2, max_d, mask, **kw)
                    fake_grads = correlation_backward(
                        grad.to("meta"), x1.to("meta"), x2.to("meta"), max_d, mask, **kw
                    )
                    for r, f in zip(real_grads, fake_grads):
                        self.assertEqual(r is None, f is None)
                        if r is not None:
                            self.assertEqual(f.shape, r.shape)
                            self.assertEqual(f.stride(), r.stride())

    def test_meta_errors_match_kernel(self):
        # Bad arguments fail on meta tensors with the kernel's error type and
        # the same message up to the formatting of sizes and dtypes.
        x = torch.randn(1, 4, 5, 5)
        bad_calls = [
            ((x, x[:, :2], 1), {}, "to have the same shape"),
            ((x, x.double(), 1), {}, "to have the same dtype"),
            ((x[0, 0], x[0, 0], 1), {}, "3D \\(C, H, W\\) or 4D"),
            ((x.long(), x.long(), 1), {}, "floating point dtype"),
            ((x, x, 1), dict(groups=3), "divisible by groups"),
            ((x, x, 1), dict(groups=0), "groups to be positive"),
            ((x, x, 1), dict(kernel_size=0), "kernel_size to be positive"),
            ((x, x, 1), dict(stride=(1, 0)), "stride to be positive"),
            (
                (x, x, 1),
                dict(displacement_stride=(0, -1)),
                "displacement_stride to be nonzero",
            ),
            ((x, x, 1), dict(padding=-1), "padding to be non-negative"),
            ((x, x, -1), {}, "max_displacement to be non-negative"),
            (
                (x, x, 1),
                dict(min_displacement=2),
                "min_displacement <= max_displacement",
            ),
            ((x, x, 1), dict(kernel_size=7), "non-empty output"),
        ]
        for args, kw, message in bad_calls:
            with self.assertRaisesRegex(
                RuntimeError, "correlation\\(\\): expected .*" + message
            ):
                F.correlation(*args, **kw)
            meta_args = [
                a.to("meta") if isinstance(a, torch.Tensor) else a for a in args
            ]
            with self.assertRaisesRegex(
                RuntimeError, "correlation\\(\\): expected .*" + message
            ):
                F.correlation(*meta_args, **kw)
        # grad_output of the wrong shape: ValueError (TORCH_CHECK_VALUE).
        for device in ("cpu", "meta"):
            y = x.to(device)
            with self.assertRaisesRegex(
                ValueError, "expected grad_output to have sizes"
            ):
                correlation_backward(
                    torch.zeros(1, 8, 5, 5, device=device), y, y, 1, [True, True]
                )

    def test_meta_and_cpu_agree_on_every_dtype(self):
        # One dtype check serves every backend: for each dtype torch has, the
        # CPU kernel, the Meta kernel and FakeTensorMode either all fail with
        # the same message or all return the same shape, dtype and strides
        # (Float8, integer, bool and complex inputs fail everywhere).
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.proxy_tensor import make_fx

        def call_in(mode, a):
            with mode:
                return call(a)

        dtypes = {v for v in vars(torch).values() if isinstance(v, torch.dtype)}
        checked = 0
        for dtype in sorted(dtypes, key=str):
            try:
                x = torch.zeros(1, 2, 4, 5, dtype=dtype)
            except (RuntimeError, TypeError):
                continue  # a dtype CPU tensors cannot hold (sub-byte, ...)
            outcomes = []
            fake_mode = FakeTensorMode()

            def call(a):
                out = F.correlation(a, a, 1, kernel_size=3, padding=1)
                return (
                    tuple(int(s) for s in out.shape),
                    out.dtype,
                    tuple(int(s) for s in out.stride()),
                )

            def symbolic(a):
                # Symbolic sizes (dynamic shapes): the C++ Meta kernel too,
                # not the decomposition (see _compile.py).
                shapes = []
                make_fx(lambda t: shapes.append(call(t)), tracing_mode="symbolic")(a)
                return shapes[0]

            runs = (
                ("cpu", call),
                ("meta", lambda a: call(a.to("meta"))),
                ("fake", lambda a: call_in(fake_mode, fake_mode.from_tensor(a))),
                ("symbolic", symbolic),
            )
            if dtype not in torch.fx.graph.dtype_abbrs:
                runs = runs[:3]  # FX cannot print a graph holding this dtype
            for name, run in runs:
                try:
                    outcomes.append(run(x))
                except RuntimeError as e:
                    outcomes.append(str(e).split("\n")[0])
            with self.subTest(dtype=dtype):
                for outcome in outcomes[1:]:
                    self.assertEqual(outcome, outcomes[0])
                supported = dtype in (
                    torch.float64,
                    torch.float32,
                    torch.float16,
                    torch.bfloat16,
                )
                self.assertEqual(
                    isinstance(outcomes[0], tuple), supported, msg=str(outcomes)
                )
            checked += 1
        self.assertGreater(checked, 15)
        self.assertIn(torch.float8_e4m3fn, dtypes)

    def test_offset_meta_matches_kernel(self):
        # With an offset: the Meta kernels' shapes, dtypes and strides equal
        # the CPU kernel's for both operators, also for channels_last inputs
        # or offset (the offset's gradient follows the offset's layout), and
        # each entry of the three-element output_mask is honoured.
        masks = ([True, True, True], [False, False, True], [True, False, False])
        for shape1, shape2, kwargs in OFFSET_CASES:
            max_d, kw = split(kwargs)
            x1, x2, offset = make_offset_inputs(shape1, shape2, kwargs, torch.float32)
            layouts = [(x1, x2, offset)]
            if len(shape1) == 4:
                cl = [
                    t.contiguous(memory_format=torch.channels_last) for t in layouts[0]
                ]
                layouts += [tuple(cl), (x1, x2, cl[2])]
            for a, b, o in layouts:
                real = F.correlation(a, b, max_d, offset=o, **kw)
                meta = [t.to("meta") for t in (a, b, o)]
                fake = F.correlation(meta[0], meta[1], max_d, offset=meta[2], **kw)
                self.assertEqual(fake.shape, real.shape)
                self.assertEqual(fake.dtype, real.dtype)
                self.assertEqual(fake.stride(), real.stride())
                grad = torch.randn_like(real)
                for mask in masks:
                    reals = correlation_backward(
                        grad, a, b, max_d, mask, offset=o, **kw
                    )
                    fakes = correlation_backward(
                        grad.to("meta"), *meta[:2], max_d, mask, offset=meta[2], **kw
                    )
                    for r, f in zip(reals, fakes):
                        self.assertEqual(r is None, f is None)
                        if r is not None:
                            self.assertEqual(f.shape, r.shape)
                            self.assertEqual(f.stride(), r.stride())
        # No offset gradient without an offset, whatever the mask says.
        x1, x2 = make_inputs((1, 2, 4, 5))
        grad = torch.randn(1, 9, 4, 5, dtype=torch.float64)
        for device in ("cpu", "meta"):
            grads = correlation_backward(
                *(t.to(device) for t in (grad, x1, x2)), 1, [True, True, True]
            )
            self.assertIsNone(grads[2])

    def test_offset_errors_match_kernel(self):
        # Bad offsets, and input2 of another shape, fail with the same error
        # on the CPU kernel, the Meta kernel and under FakeTensorMode, in
        # the forward and the backward.
        from torch._subclasses.fake_tensor import FakeTensorMode

        x = torch.randn(1, 4, 5, 5)
        offset = torch.zeros(1, 2, 5, 5)
        sizes = r"expected offset of sizes \(N, 2, H_out, W_out\) = \[1, 2, 5, 5\] "
        same_batch = (
            "with an offset, expected input2 to have the same number of "
            "dimensions, batch size and channels as input1"
        )
        bad_calls = [
            (
                x,
                x,
                offset[:, :1],
                sizes + r".* but got offset with sizes \[1, 1, 5, 5\]",
            ),
            (x, x, torch.zeros(1, 2, 5, 4), sizes + r".*\[1, 2, 5, 4\]"),
            (x, x, torch.zeros(2, 2, 5, 5), sizes + r".*\[2, 2, 5, 5\]"),
            (x, x, offset[0], sizes + r".*\[2, 5, 5\]"),
            (
                x[0],
                x[0],
                offset,
                r"expected offset of sizes \(2, H_out, W_out\) = \[2, 5, 5\]",
            ),
            (x, x, offset.double(), "expected offset to have the same dtype as input1"),
            (x, x[:, :2], offset, same_batch),
            (x, x[0], offset, same_batch),
            (x, torch.randn(2, 4, 5, 5), offset, same_batch),
            # Without an offset input2 keeps input1's shape.
            (
                x,
                torch.randn(1, 4, 3, 8),
                None,
                "expected input1 and input2 to have the same shape",
            ),
        ]

        def forward(a, b, o, grad):
            F.correlation(a, b, 1, offset=o)

        def backward(a, b, o, grad):
            correlation_backward(grad, a, b, 1, [True] * 3, offset=o)

        fake_mode = FakeTensorMode()
        for a, b, o, message in bad_calls:
            grad = torch.zeros(9, 5, 5) if a.dim() == 3 else torch.zeros(1, 9, 5, 5)
            tensors = (a, b, o, grad)
            for name, convert, mode in (
                ("cpu", lambda t: t, contextlib.nullcontext()),
                ("meta", lambda t: t.to("meta"), contextlib.nullcontext()),
                ("fake", fake_mode.from_tensor, fake_mode),
            ):
                args = [None if t is None else convert(t) for t in tensors]
                for fn in (forward, backward):
                    with self.subTest(message=message, device=name, fn=fn.__name__):
                        with (
                            mode,
                            self.assertRaisesRegex(
                                RuntimeError, r"correlation\(\): " + message
                            ),
                        ):
                            fn(*args)
        # The offset on another device than the inputs. (A sparse offset
        # never reaches the layout check: the dispatcher finds no kernel.)
        device = "correlation\\(\\): expected offset to be on the same device as input1"
        with self.assertRaisesRegex(
            RuntimeError, device + ", but offset is on meta and input1 is on cpu"
        ):
            F.correlation(x, x, 1, offset=offset.to("meta"))
        with self.assertRaisesRegex(
            RuntimeError, device + ", but offset is on cpu and input1 is on meta"
        ):
            F.correlation(x.to("meta"), x.to("meta"), 1, offset=offset)

    def test_offset_symbolic_shapes(self):
        # make_fx with symbolic sizes of both operators with an offset: the
        # graph serves other sizes, input2's independent of input1's.
        from torch.fx.experimental.proxy_tensor import make_fx

        kw = dict(kernel_size=3, stride=2, padding=1, groups=2)

        def fn(a, b, o):
            out = F.correlation(a, b, 1, offset=o, **kw)
            return (
                out,
                *correlation_backward(out, a, b, 1, [True] * 3, offset=o, **kw),
            )

        def inputs(shape1, shape2, seed):
            kwargs = dict(kw, max_displacement=1)
            return make_offset_inputs(shape1, shape2, kwargs, seed=seed)

        gm = make_fx(fn, tracing_mode="symbolic")(
            *inputs((2, 4, 9, 11), (2, 4, 5, 6), 0)
        )
        outputs = next(n for n in gm.graph.nodes if n.op == "output").args[0]
        self.assertIsInstance(outputs[0].meta["val"].shape[2], torch.SymInt)
        self.assertIsInstance(outputs[2].meta["val"].shape[3], torch.SymInt)
        for shape1, shape2 in (
            ((2, 4, 9, 11), (2, 4, 5, 6)),
            ((3, 2, 6, 5), (3, 2, 8, 3)),
        ):
            args = inputs(shape1, shape2, 1)
            self.assertEqual(gm(*args), fn(*args))

    def test_meta_kernels_are_cpp(self):
        # The Meta kernels come from the yaml's Meta: entries (generated
        # registration), not from a Python meta registration.
        for name in ("correlation", "correlation_backward"):
            dump = torch._C._dispatch_dump(f"aten::{name}")
            meta = [line for line in dump.splitlines() if line.startswith("Meta:")]
            self.assertEqual(len(meta), 1, dump)
            self.assertIn("RegisterMeta", meta[0])
            op = getattr(aten, name).default
            self.assertNotIn(op, torch._decomp.meta_table)

    def test_fake_tensor_dynamic_shapes(self):
        # Symbolic tracing (FakeTensor with SymInt sizes) of both operators:
        # the output sizes are the symbolic conv formula, so the traced graph
        # serves other input sizes, and the checks add no specialisation.
        from torch.fx.experimental.proxy_tensor import make_fx

        kw = dict(kernel_size=3, stride=2, padding=1, groups=2)

        def fn(a, b):
            out = F.correlation(a, b, 1, **kw)
            return (out, *correlation_backward(out, a, b, 1, [True, True], **kw))

        gm = make_fx(fn, tracing_mode="symbolic")(*make_inputs((2, 4, 9, 11)))
        outputs = next(n for n in gm.graph.nodes if n.op == "output").args[0]
        self.assertIsInstance(outputs[0].meta["val"].shape[2], torch.SymInt)
        for shape in ((2, 4, 9, 11), (3, 2, 6, 5)):
            x1, x2 = make_inputs(shape, seed=1)
            expected = fn(x1, x2)
            self.assertEqual(gm(x1, x2), expected)

    def test_fake_tensor_descending(self):
        # FakeTensor (and symbolic sizes) give the kernel's shape for
        # descending orders, whose channel count is that of the set walked
        # from the top: (-2, 3) by -2 is {3, 1, -1}, by 2 {-2, 0, 2}.
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.proxy_tensor import make_fx

        kw = dict(min_displacement=(-2, -5), displacement_stride=(-2, -3), groups=2)
        x1, x2 = make_inputs((2, 4, 9, 11))
        real = F.correlation(x1, x2, (3, 0), **kw)
        self.assertEqual(real.shape, (2, 2 * 3 * 2, 9, 11))
        mode = FakeTensorMode()
        with mode:
            fake = F.correlation(
                mode.from_tensor(x1), mode.from_tensor(x2), (3, 0), **kw
            )
        self.assertEqual(fake.shape, real.shape)
        self.assertEqual(fake.stride(), real.stride())
        gm = make_fx(
            lambda a, b: F.correlation(a, b, (3, 0), **kw), tracing_mode="symbolic"
        )(x1, x2)
        self.assertEqual(gm(x1, x2), real)

    def test_opcheck(self):
        # torch.library.opcheck: schema, autograd registration, FakeTensor
        # and AOTAutograd with dynamic shapes, for both operators.
        x1, x2 = make_inputs((2, 4, 6, 5), torch.float64, requires_grad=True)
        kw = dict(kernel_size=3, padding=1, groups=2, scale=0.5)
        torch.library.opcheck(aten.correlation.default, (x1, x2, [2, 1]), kw)
        grad = torch.randn(2, 30, 6, 5, dtype=torch.float64, requires_grad=True)
        geometry = ([2, 1], None, [3, 3], [1, 1], [1, 1], [1, 1], [1, 1], 2, 0.5)
        torch.library.opcheck(
            aten.correlation_backward.default,
            (grad, x1, x2, None, *geometry, [True, True, False]),
        )
        # With an offset (input2 of its own size), its gradient included.
        y2 = make_inputs((2, 4, 3, 7), seed=1, requires_grad=True)[0]
        offset = make_offset((2, 2, 6, 5)).requires_grad_()
        torch.library.opcheck(
            aten.correlation.default, (x1, y2, [2, 1]), dict(kw, offset=offset)
        )
        # AOTAutograd differentiates every output of the backward operator,
        # which the offset's gradient does not support (no double backward
        # through the offset): the input gradients only, the offset constant.
        torch.library.opcheck(
            aten.correlation_backward.default,
            (grad, x1, y2, offset.detach(), *geometry, [True, True, False]),
        )
        # The autogen'd out= variant goes through the same Meta kernel.
        out = torch.empty(0, device="meta")
        aten.correlation.out(
            x1.detach().to("meta").float(),
            x2.detach().to("meta").float(),
            [2, 1],
            **kw,
            out=out,
        )
        self.assertEqual(out.shape, (2, 30, 6, 5))


class TestCorrelationDecomposition(TestCase):
    """The decomposition into core ATen against the kernel."""

    @staticmethod
    def decomp(x1, x2, max_displacement, **kwargs):
        # The registered decomposition, called as the dispatcher calls it
        # (int[2] arguments as lists).
        def listed(v):
            return [v, v] if isinstance(v, int) else list(v)

        kwargs = {
            k: v if k in ("offset", "groups", "scale") or v is None else listed(v)
            for k, v in kwargs.items()
        }
        fn = torch._decomp.decomposition_table[aten.correlation.default]
        return fn(x1, x2, listed(max_displacement), **kwargs)

    @parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
    def test_matches_kernel(self, dtype):
        # Every argument, batched and unbatched, also channels_last.
        tol = dict(
            float64=(1e-12, 1e-12), float32=(1e-5, 1e-5), bfloat16=(1.6e-2, 2e-2)
        )
        rtol, atol = tol[str(dtype).split(".")[1]]
        for shape, kwargs in CASES:
            max_d, kw = split(kwargs)
            x1, x2 = make_inputs(shape, dtype)
            expected = F.correlation(x1, x2, max_d, **kw)
            actual = self.decomp(x1, x2, max_d, **kw)
            self.assertEqual(actual.dtype, expected.dtype)
            self.assertEqual(
                actual, expected, rtol=rtol, atol=atol, msg=f"{shape} {kwargs}"
            )
            if len(shape) == 4:
                cl1 = x1.contiguous(memory_format=torch.channels_last)
                cl2 = x2.contiguous(memory_format=torch.channels_last)
                actual = self.decomp(cl1, cl2, max_d, **kw)
                self.assertEqual(actual, expected, rtol=rtol, atol=atol)
                self.assertEqual(
                    actual.stride(), F.correlation(cl1, cl2, max_d, **kw).stride()
                )

    def test_reference_and_empty(self):
        # Against the independent float64 reference; batch 0 and C == 0.
        x1, x2 = make_inputs((2, 3, 6, 6))
        self.assertEqual(
            self.decomp(x1, x2, 2, kernel_size=3, padding=1),
            correlation_reference(x1, x2, 2, kernel_size=3, padding=1),
        )
        for shape in ((0, 3, 6, 6), (2, 0, 6, 6)):
            x1, x2 = make_inputs(shape)
            self.assertEqual(self.decomp(x1, x2, 1), F.correlation(x1, x2, 1))
        # With an offset, also an empty input2 (every sample reads zero); NaN
        # offsets still give NaN.
        for shape1, shape2 in (
            ((0, 3, 6, 6), (0, 3, 4, 5)),
            ((2, 0, 6, 6), (2, 0, 4, 5)),
            ((2, 3, 6, 6), (2, 3, 0, 5)),
            ((2, 3, 6, 6), (2, 3, 4, 0)),
        ):
            kwargs = dict(max_displacement=1)
            x1, x2, offset = make_offset_inputs(shape1, shape2, kwargs, nonfinite=True)
            self.assertEqual(
                self.decomp(x1, x2, 1, offset=offset),
                F.correlation(x1, x2, 1, offset=offset),
                equal_nan=True,
            )

    def test_traced_graph_is_core_aten(self):
        # make_fx with the decomposition yields only core ATen ops, and input2
        # is read through slices (views) of one padded copy: one
        # constant_pad_nd per input, not one per displacement.
        from torch.fx.experimental.proxy_tensor import make_fx

        x1, x2 = make_inputs((1, 4, 6, 6), torch.float32)
        op = aten.correlation.default
        table = {op: torch._decomp.decomposition_table[op]}
        gm = make_fx(
            lambda a, b: F.correlation(a, b, 2, kernel_size=3, padding=1),
            decomposition_table=table,
        )(x1, x2)
        self.assertEqual(core_aten_violations(gm), set())
        pads = [n for n in gm.graph.nodes if n.target == aten.constant_pad_nd.default]
        self.assertEqual(len(pads), 2)
        self.assertEqual(gm(x1, x2), F.correlation(x1, x2, 2, kernel_size=3, padding=1))

    @parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
    def test_offset_matches_kernel(self, dtype):
        # With an offset (and input2 of its own size): every argument,
        # batched and unbatched, channels_last, NaN/inf offsets (NaN outputs
        # at their locations) and a huge finite one (zeros). float32 differs
        # by the rounding of grid_sampler_2d's normalized coordinates.
        tol = dict(
            float64=(1e-12, 1e-12), float32=(1e-4, 1e-4), bfloat16=(1.6e-2, 2e-2)
        )
        rtol, atol = tol[str(dtype).split(".")[1]]
        for shape1, shape2, kwargs in OFFSET_CASES:
            max_d, kw = split(kwargs)
            x1, x2, offset = make_offset_inputs(
                shape1, shape2, kwargs, dtype, nonfinite=True
            )
            expected = F.correlation(x1, x2, max_d, offset=offset, **kw)
            actual = self.decomp(x1, x2, max_d, offset=offset, **kw)
            self.assertEqual(actual.dtype, expected.dtype)
            self.assertTrue(expected.isnan().any())
            self.assertEqual(
                actual,
                expected,
                rtol=rtol,
                atol=atol,
                equal_nan=True,
                msg=f"{shape1} {shape2} {kwargs}",
            )
            if len(shape1) == 4:
                cl = [
                    t.contiguous(memory_format=torch.channels_last)
                    for t in (x1, x2, offset)
                ]
                actual = self.decomp(cl[0], cl[1], max_d, offset=cl[2], **kw)
                self.assertEqual(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
                self.assertEqual(
                    actual.stride(),
                    F.correlation(cl[0], cl[1], max_d, offset=cl[2], **kw).stride(),
                )

    def test_offset_gradients_match_kernel(self):
        # Autograd through the decomposition (grid_sampler_2d's backward)
        # against the operator's backward, float64, for input1, input2 and
        # the offset, with non-finite offsets: NaN offset gradient and no
        # contribution to the input gradients at their locations.
        for shape1, shape2, kwargs in OFFSET_CASES:
            max_d, kw = split(kwargs)
            inputs = [
                t.requires_grad_()
                for t in make_offset_inputs(shape1, shape2, kwargs, nonfinite=True)
            ]
            x1, x2, offset = inputs
            expected = F.correlation(x1, x2, max_d, offset=offset, **kw)
            actual = self.decomp(x1, x2, max_d, offset=offset, **kw)
            weight = torch.randn_like(expected)
            want = torch.autograd.grad(expected, inputs, weight)
            got = torch.autograd.grad(actual, inputs, weight)
            self.assertFalse(want[0].isnan().any() or want[1].isnan().any())
            self.assertTrue(want[2].isnan().any())
            for name, g, w in zip(("input1", "input2", "offset"), got, want):
                self.assertEqual(
                    g, w, atol=1e-11, rtol=1e-11, equal_nan=True, msg=f"{name} {kwargs}"
                )

    def test_offset_integer_equals_shifted_reference(self):
        # A constant integer offset (u, v) reads input2 like the integer
        # operator with the displacement range shifted by (v, u): decomposition
        # and kernel against the independent float64 reference.
        x1, x2 = make_inputs((2, 4, 6, 7))
        u, v = 2.0, -1.0
        offset = torch.empty(2, 2, 6, 7, dtype=torch.float64)
        offset[:, 0], offset[:, 1] = u, v
        kw = dict(kernel_size=3, padding=1, groups=2, displacement_stride=(1, -1))
        expected = correlation_reference(
            x1,
            x2,
            (1 + int(v), 2 + int(u)),
            min_displacement=(-1 + int(v), -1 + int(u)),
            **kw,
        )
        kw["min_displacement"] = (-1, -1)
        for fn in (F.correlation, self.decomp):
            self.assertEqual(fn(x1, x2, (1, 2), offset=offset, **kw), expected)

    def test_offset_traced_graph_is_core_aten(self):
        # make_fx with the decomposition: only core ATen operators, one
        # grid_sampler_2d per displacement (one sampled copy of input2 at a
        # time, every kernel tap in it), none for input1.
        from torch.fx.experimental.proxy_tensor import make_fx

        shape1, shape2, kwargs = OFFSET_CASES[1]
        max_d, kw = split(kwargs)
        x1, x2, offset = make_offset_inputs(shape1, shape2, kwargs, torch.float32)
        op = aten.correlation.default
        table = {op: torch._decomp.decomposition_table[op]}
        gm = make_fx(
            lambda a, b, o: F.correlation(a, b, max_d, offset=o, **kw),
            decomposition_table=table,
        )(x1, x2, offset)
        self.assertEqual(core_aten_violations(gm), set())
        samplers = [
            n for n in gm.graph.nodes if n.target == aten.grid_sampler_2d.default
        ]
        self.assertEqual(len(samplers), 5 * 3)
        self.assertTrue(all(n.args[0].name == "b_1" for n in samplers))
        self.assertEqual(
            gm(x1, x2, offset),
            F.correlation(x1, x2, max_d, offset=offset, **kw),
            rtol=1e-4,
            atol=1e-4,
        )


class TestCorrelationCompile(TestCase):
    """torch.compile(fullgraph=True) with Inductor, forward and backward."""

    def setUp(self):
        super().setUp()
        torch._dynamo.reset()
        # Inductor's on-disk caches off: a graph cached by an earlier run (of
        # an older build, say) would skip the lowering under test.
        self._no_caches = torch._inductor.config.patch(force_disable_caches=True)
        self._no_caches.__enter__()

    def tearDown(self):
        self._no_caches.__exit__(None, None, None)
        torch._dynamo.reset()
        super().tearDown()

    def _check(self, dynamic, model=None):
        model = CorrModule() if model is None else model
        compiled = torch.compile(model, fullgraph=True, dynamic=dynamic)
        for shape in ((2, 3, 6, 7), (1, 3, 8, 5)):
            x1, x2 = make_inputs(shape, torch.float32, requires_grad=True)
            expected = model(x1, x2)
            actual = compiled(x1, x2)
            self.assertEqual(actual, expected)
            grads = torch.autograd.grad(actual.square().sum(), (x1, x2))
            expected_grads = torch.autograd.grad(expected.square().sum(), (x1, x2))
            self.assertEqual(grads, expected_grads)

    def test_compile_static(self):
        self._check(dynamic=False)

    def test_compile_dynamic(self):
        self._check(dynamic=True)

    def test_compile_descending(self):
        self._check(dynamic=False, model=GwcModule())

    def test_compile_calls_native_kernel(self):
        # Inductor keeps aten.correlation (an extern kernel call) rather than
        # decomposing it, although the decomposition is in the core ATen table.
        from torch._inductor.utils import run_and_get_code

        x1, x2 = make_inputs((1, 2, 5, 5), torch.float32)
        fn = torch.compile(lambda a, b: F.correlation(a, b, 1) + 1, fullgraph=True)
        out, code = run_and_get_code(fn, x1, x2)
        self.assertEqual(out, F.correlation(x1, x2, 1) + 1)
        self.assertIn("aten.correlation", "\n".join(code))

    def test_compile_explicit_fallbacks(self):
        # Inductor's explicit fallbacks (make_fallback in lowering.py) for both
        # operators. An implicit fallback for an operator with a decomposition
        # asserts whenever the CI environment variable is set, and an implicit
        # backward fallback would force contiguous (copied) inputs.
        from unittest import mock

        from torch._inductor.utils import run_and_get_code

        def forward(a, b):
            return F.correlation(a, b, 1, kernel_size=3, padding=1).square().sum()

        compiled = torch.compile(forward, fullgraph=True)

        def step(fn, a, b):  # the backward graph is compiled when it first runs
            return torch.autograd.grad(fn(a, b), (a, b))

        x1, x2 = (
            t.to(memory_format=torch.channels_last).detach().requires_grad_()
            for t in make_inputs((2, 4, 6, 7), torch.float32)
        )
        with mock.patch.dict(os.environ, {"CI": "1"}):
            grads, code = run_and_get_code(step, compiled, x1, x2)
        self.assertEqual(grads, step(forward, x1, x2))
        code = "\n".join(code)
        self.assertIn("aten.correlation_backward", code)

    def test_compile_offset(self):
        # With an offset: fullgraph, static and dynamic shapes (input2 of its
        # own size), the native kernels kept (extern calls with offset=),
        # forward and backward against eager for all three inputs.
        from torch._inductor.utils import run_and_get_code

        model = OffsetModule()

        def step(fn, *args):
            out = fn(*args)
            return out, torch.autograd.grad(out.square().sum(), args)

        kwargs = dict(max_displacement=1, kernel_size=3, padding=1)
        shapes = (((2, 4, 6, 7), (2, 4, 3, 4)), ((1, 4, 8, 5), (1, 4, 4, 3)))
        for dynamic in (False, True):
            torch._dynamo.reset()
            compiled = torch.compile(model, fullgraph=True, dynamic=dynamic)
            # (Static: one size, a second would only recompile.)
            for i, (shape1, shape2) in enumerate(shapes if dynamic else shapes[:1]):
                args = [
                    t.requires_grad_()
                    for t in make_offset_inputs(
                        shape1, shape2, kwargs, torch.float32, seed=i
                    )
                ]
                (out, grads), code = run_and_get_code(step, compiled, *args)
                expected, expected_grads = step(model, *args)
                self.assertEqual(out, expected)
                self.assertEqual(grads, expected_grads)
                if i == 0:
                    code = "\n".join(code)
                    self.assertRegex(code, r"aten\.correlation\.default\(.*offset=")
                    self.assertIn("aten.correlation_backward.default(", code)
                    self.assertNotIn("grid_sampler", code)


class TestCorrelationExport(TestCase):
    """torch.export: aten.correlation in the program; core ATen after decomposition."""

    def test_export_and_decompose(self):
        for model in (CorrModule(), GwcModule()):
            x1, x2 = make_inputs((2, 3, 6, 7), torch.float32)
            ep = torch.export.export(model, (x1, x2))
            self.assertIn(aten.correlation.default, graph_targets(ep.graph_module))
            self.assertEqual(ep.module()(x1, x2), model(x1, x2))
            core = ep.run_decompositions()
            self.assertNotIn(aten.correlation.default, graph_targets(core.graph_module))
            self.assertEqual(core_aten_violations(core.graph_module), set())
            self.assertEqual(core.module()(x1, x2), model(x1, x2), rtol=1e-5, atol=1e-5)

    def test_export_dynamic(self):
        model = CorrModule()
        x1, x2 = make_inputs((2, 3, 6, 7), torch.float32)
        batch, height, width = (
            torch.export.Dim("batch"),
            torch.export.Dim("height", min=2),
            torch.export.Dim("width", min=2),
        )
        spec = {0: batch, 2: height, 3: width}
        ep = torch.export.export(model, (x1, x2), dynamic_shapes=(spec, spec))
        core = ep.run_decompositions()
        self.assertEqual(core_aten_violations(core.graph_module), set())
        for shape in ((2, 3, 6, 7), (3, 3, 9, 4)):
            y1, y2 = make_inputs(shape, torch.float32, seed=1)
            self.assertEqual(ep.module()(y1, y2), model(y1, y2))
            self.assertEqual(core.module()(y1, y2), model(y1, y2), rtol=1e-5, atol=1e-5)

    def test_export_offset(self):
        # torch.export keeps aten.correlation with its offset; the core ATen
        # program samples input2 with grid_sampler_2d; both match eager, also
        # with dynamic sizes (input2's independent of input1's).
        model = OffsetModule()
        kwargs = dict(max_displacement=1, kernel_size=3, padding=1)
        args = make_offset_inputs((2, 4, 6, 7), (2, 4, 4, 9), kwargs, torch.float32)
        dim = torch.export.Dim
        batch, h, w, h2, w2 = (dim(n, min=2) for n in ("n", "h", "w", "h2", "w2"))
        dynamic_shapes = (
            {0: batch, 2: h, 3: w},
            {0: batch, 2: h2, 3: w2},
            {0: batch, 2: h, 3: w},
        )
        for shapes in (None, dynamic_shapes):
            ep = torch.export.export(model, args, dynamic_shapes=shapes)
            (node,) = [
                n
                for n in ep.graph_module.graph.nodes
                if n.target == aten.correlation.default
            ]
            self.assertIn("offset", node.kwargs)
            core = ep.run_decompositions()
            targets = graph_targets(core.graph_module)
            self.assertNotIn(aten.correlation.default, targets)
            self.assertIn(aten.grid_sampler_2d.default, targets)
            self.assertEqual(core_aten_violations(core.graph_module), set())
            runs = [args]
            if shapes is not None:
                runs.append(
                    make_offset_inputs(
                        (3, 4, 9, 5), (3, 4, 3, 8), kwargs, torch.float32, seed=1
                    )
                )
            for inputs in runs:
                expected = model(*inputs)
                self.assertEqual(ep.module()(*inputs), expected)
                self.assertEqual(core.module()(*inputs), expected, rtol=1e-4, atol=1e-4)


HAS_ONNX = all(
    importlib.util.find_spec(m) is not None
    for m in ("onnx", "onnxscript", "onnxruntime")
)


def onnxruntime_output(model, inputs):
    """``model(*inputs)`` exported by ``torch.onnx.export(dynamo=True)`` and
    run by onnxruntime."""
    import onnxruntime

    program = torch.onnx.export(model, inputs, dynamo=True, verbose=False)
    buffer = io.BytesIO()
    program.save(buffer)
    session = onnxruntime.InferenceSession(
        buffer.getvalue(), providers=["CPUExecutionProvider"]
    )
    names = [i.name for i in session.get_inputs()]
    (actual,) = session.run(None, dict(zip(names, (t.numpy() for t in inputs))))
    return torch.from_numpy(actual)


class TestCorrelationONNX(TestCase):
    """torch.onnx.export(dynamo=True) of a PWC-style block, run by onnxruntime."""

    @unittest.skipIf(
        not HAS_ONNX, "needs the onnx, onnxscript and onnxruntime packages"
    )
    def test_onnx_pwc_block(self):
        torch.manual_seed(0)
        model = PWCBlock().eval()
        image1, image2 = torch.randn(1, 3, 16, 20), torch.randn(1, 3, 16, 20)
        actual = onnxruntime_output(model, (image1, image2))
        with torch.no_grad():
            expected = model(image1, image2)
        self.assertEqual(actual, expected, rtol=1e-4, atol=1e-5)

    @unittest.skipIf(
        not HAS_ONNX, "needs the onnx, onnxscript and onnxruntime packages"
    )
    def test_onnx_flow_guided_lookup(self):
        # A flow-guided lookup on a coarser level of input2: the decomposition's
        # grid_sampler_2d becomes ONNX GridSample.
        class Lookup(torch.nn.Module):
            def forward(self, f1, f2, flow):
                coarse = F.avg_pool2d(f2, 2)
                return F.correlation(f1, coarse, 2, offset=flow / 2 - 0.5, scale=0.25)

        gen = torch.Generator().manual_seed(0)
        f1 = torch.randn(1, 4, 12, 16, generator=gen)
        f2 = torch.randn(1, 4, 12, 16, generator=gen)
        flow = 3 * torch.randn(1, 2, 12, 16, generator=gen)
        actual = onnxruntime_output(Lookup(), (f1, f2, flow))
        expected = Lookup()(f1, f2, flow)
        self.assertEqual(actual, expected, rtol=1e-4, atol=1e-5)


class TestCorrelationBinding(TestCase):
    """F.correlation is the generated binding with its docstring attached."""

    def test_is_the_generated_binding(self):
        self.assertIs(F.correlation, torch._C._nn.correlation)
        self.assertIs(torch_correlation.correlation, F.correlation)  # [preview only]
        self.assertEqual(type(F.correlation).__name__, "builtin_function_or_method")
        doc = F.correlation.__doc__
        self.assertTrue(
            doc.startswith(
                "correlation(input1, input2, max_displacement, *, offset=None, "
                "min_displacement=None, "
                "kernel_size=1, stride=1, padding=0, dilation=1, displacement_stride=1, "
                "groups=1, scale=1.0) -> Tensor\n"
            ),
            doc[:200],
        )
        self.assertIn("Computes the local correlation", doc)
        self.assertIn("Examples::", doc)

    def test_argument_parsing(self):
        # Keywords, single-int expansion of int[2], None for int[2]?, and the
        # binding's own errors for wrong types or extra positional arguments.
        x1, x2 = make_inputs((1, 4, 5, 6))
        full = F.correlation(
            x1,
            x2,
            (2, 2),
            min_displacement=None,
            kernel_size=(3, 3),
            stride=(1, 1),
            padding=(1, 1),
            dilation=(1, 1),
            displacement_stride=(1, 1),
            groups=2,
            scale=0.5,
        )
        short = F.correlation(x1, x2, 2, kernel_size=3, padding=1, groups=2, scale=0.5)
        self.assertEqual(full, short, atol=0, rtol=0)
        self.assertEqual(
            F.correlation(input1=x1, input2=x2, max_displacement=1),
            F.correlation(x1, x2, 1),
            atol=0,
            rtol=0,
        )
        with self.assertRaisesRegex(
            TypeError, "takes 3 positional arguments but 4 were given"
        ):
            F.correlation(x1, x2, 1, 3)
        with self.assertRaisesRegex(
            TypeError, "got an unexpected keyword argument 'kernel'"
        ):
            F.correlation(x1, x2, 1, kernel=3)
        with self.assertRaisesRegex(
            TypeError, "argument 'stride' must be tuple of ints, not str"
        ):
            F.correlation(x1, x2, 1, stride="1")

    def test_torch_function_through_the_binding(self):
        seen = []

        class Logged(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                seen.append((func, len(args), sorted(kwargs or {})))
                with torch._C.DisableTorchFunctionSubclass():
                    return func(*args, **(kwargs or {}))

        x1, x2 = make_inputs((1, 2, 4, 4))
        F.correlation(x1, x2.as_subclass(Logged), 1, scale=0.5)
        self.assertEqual(seen, [(F.correlation, 3, ["scale"])])

    def test_script_maps_the_binding(self):
        # TorchScript maps each function of torch._C._nn to the aten::
        # operator of its name (torch/jit/_builtins.py); F.correlation is
        # that function, so it scripts with no mapping of its own: the only
        # table entries naming correlation are the bindings' own. Fresh
        # interpreter, so that nothing else has touched the table.
        code = textwrap.dedent("""
            import torch
            import torch.nn.functional as F
            import torch.jit._builtins as builtins
            {preview_import}

            def fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                return F.correlation(a, b, 1, kernel_size=3, padding=1, scale=0.5)

            scripted = torch.jit.script(fn)
            assert "aten::correlation" in str(scripted.graph), scripted.graph
            ours = sorted((op, fn is getattr(torch._C._nn, op.split("::")[1], None))
                          for fn, op in builtins._builtin_ops if "correlation" in op)
            # (correlation_backward has no Python binding: torchgen skips
            # *_backward functions.)
            assert ours == [("aten::correlation", True)], ours
            table = builtins._get_builtin_table()
            assert table[id(F.correlation)] == "aten::correlation"
            x = torch.randn(1, 2, 5, 6)
            torch.testing.assert_close(scripted(x, x), fn(x, x))
            print("OK")
        """)
        preview_import = ""
        preview_import = "import torch_correlation"  # [preview only]
        code = code.replace("{preview_import}", preview_import)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        with tempfile.TemporaryDirectory() as tmp:
            # TorchScript reads the function's source: a file, not -c.
            script = os.path.join(tmp, "script_correlation.py")
            with open(script, "w") as f:
                f.write(code)
            proc = subprocess.run(
                [sys.executable, script],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
            )
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("OK", proc.stdout)


class TestCorrelationTorchScript(TestCase):
    """TorchScript: script (F.correlation and nn.Correlation) and trace."""

    def test_script_function(self):
        def fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return F.correlation(
                a, b, (1, 2), kernel_size=3, padding=1, groups=2, scale=0.5
            )

        scripted = torch.jit.script(fn)
        x1, x2 = make_inputs((1, 4, 5, 6))
        self.assertEqual(scripted(x1, x2), fn(x1, x2))
        self.assertIn("aten::correlation", str(scripted.graph))

    def test_script_module(self):
        for module in (
            torch.nn.Correlation(2, scale=0.25),
            torch.nn.Correlation((0, 0), min_displacement=(0, -3), groups=2),
        ):
            scripted = torch.jit.script(module)
            x1, x2 = make_inputs((2, 4, 5, 6))
            self.assertEqual(scripted(x1, x2), module(x1, x2))

    def test_trace(self):
        model = CorrModule()
        x1, x2 = make_inputs((1, 3, 5, 6), torch.float32)
        traced = torch.jit.trace(model, (x1, x2))
        self.assertIn("aten::correlation", str(traced.graph))
        y1, y2 = make_inputs((2, 3, 7, 4), torch.float32, seed=1)
        self.assertEqual(traced(y1, y2), model(y1, y2))


class TestCorrelationVmap(TestCase):
    """torch.vmap batching rules, also under torch.func.grad."""

    def test_batching_rules_registered(self):
        # Our C++ rules, not functorch's per-sample loop fallback nor a
        # Python rule (torch.library.register_vmap).
        for name in ("aten::correlation", "aten::correlation_backward"):
            self.assertTrue(
                torch._C._dispatch_has_kernel_for_dispatch_key(name, "FuncTorchBatched")
            )
            dump = torch._C._dispatch_dump(name)
            batched = [
                line
                for line in dump.splitlines()
                if line.startswith("FuncTorchBatched:")
            ]
            self.assertEqual(len(batched), 1, dump)
            self.assertIn("BatchRulesSpatialCorrelation.cpp", batched[0])

    @parametrize(
        "in_dims",
        [(0, 0, 0), (None, 0, 0), (1, None, None), (0, 2, None), (None, None, 1)],
    )
    @parametrize("logical_rank", [3, 4])
    def test_vmap_backward_op(self, in_dims, logical_rank):
        # correlation_backward's rule, any of its three tensors vmapped, with
        # each output_mask.
        shape = (2, 4, 5, 6)[4 - logical_rank :]
        # Descending vertical order: the rule passes the arguments through.
        kw = dict(
            kernel_size=3, padding=1, displacement_stride=(-1, 1), groups=2, scale=0.5
        )
        out_shape = (2, 18, 5, 6)[4 - logical_rank :]

        args = (
            vmap_input(out_shape, in_dims[0], 3),
            vmap_input(shape, in_dims[1], 1),
            vmap_input(shape, in_dims[2], 2),
        )
        for mask in ([True, True], [True, False], [False, True]):

            def fn(g, a, b, mask=mask):
                grads = correlation_backward(g, a, b, 1, mask, **kw)
                self.assertEqual([g is not None for g in grads], mask)
                return tuple(g for g in grads if g is not None)

            actual = torch.vmap(fn, in_dims=in_dims)(*args)
            for i in range(VMAP_BATCH):
                expected = fn(*(vmap_sample(t, d, i) for t, d in zip(args, in_dims)))
                self.assertEqual(len(actual), len(expected))
                for got, want in zip(actual, expected):
                    self.assertEqual(got[i], want)

    def test_vmap_wrong_rank(self):
        x = torch.randn(3, 4, 5)
        with self.assertRaisesRegex(
            RuntimeError, "3D \\(C, H, W\\) or 4D .* sizes \\[4, 5\\]"
        ):
            torch.vmap(lambda a: F.correlation(a, a, 1))(x)

    def test_jacrev_jacfwd(self):
        # Reverse- and forward-mode Jacobians (vmap over the backward and over
        # the forward-AD formula) against autograd's row-by-row Jacobian.
        x1, x2 = make_inputs((2, 3, 4))
        kw = dict(kernel_size=(1, 3), padding=(0, 1), scale=0.5)

        def fn(a, b):
            return F.correlation(a, b, (1, 1), **kw)

        expected = torch.autograd.functional.jacobian(fn, (x1, x2))
        for transform in (torch.func.jacrev, torch.func.jacfwd):
            actual = transform(fn, argnums=(0, 1))(x1, x2)
            self.assertEqual(actual[0], expected[0])
            self.assertEqual(actual[1], expected[1])

    def test_jacrev_jacfwd_offset(self):
        # With an offset, all three arguments differentiated: vmap over the
        # backward (three results) and over the forward-AD formula.
        kwargs = dict(max_displacement=(1, 1), kernel_size=(1, 3), padding=(0, 1))
        max_d, kw = split(kwargs)
        args = make_offset_inputs((2, 3, 4), (2, 4, 3), kwargs)

        def fn(a, b, o):
            return F.correlation(a, b, max_d, offset=o, **kw)

        expected = torch.autograd.functional.jacobian(fn, args)
        for transform in (torch.func.jacrev, torch.func.jacfwd):
            actual = transform(fn, argnums=(0, 1, 2))(*args)
            for got, want in zip(actual, expected):
                self.assertEqual(got, want)

    @parametrize("in_dims", [(0, 0), (0, None), (None, 0), (2, 1)])
    @parametrize("logical_rank", [3, 4])
    def test_vmap_matches_loop(self, in_dims, logical_rank):
        shape = (2, 4, 5, 6)[4 - logical_rank :]
        x1, x2 = vmap_input(shape, in_dims[0], 1), vmap_input(shape, in_dims[1], 2)
        for steps in ((1, 1), (-1, -2)):

            def fn(a, b, steps=steps):
                return F.correlation(
                    a,
                    b,
                    2,
                    kernel_size=3,
                    padding=1,
                    displacement_stride=steps,
                    groups=2,
                )

            actual = torch.vmap(fn, in_dims=in_dims)(x1, x2)
            expected = torch.stack(
                [
                    fn(vmap_sample(x1, in_dims[0], i), vmap_sample(x2, in_dims[1], i))
                    for i in range(VMAP_BATCH)
                ]
            )
            self.assertEqual(actual, expected, msg=str(steps))

    def test_vmap_under_grad(self):
        # Per-sample gradients: vmap(grad(f)) and grad of a vmapped loss
        # against a loop over the samples.
        x1, x2 = make_inputs((3, 4, 5, 6))
        weight = torch.randn(9, 5, 6, dtype=torch.float64)

        def loss(a, b):
            return (F.correlation(a, b, 1, scale=0.5) * weight).sin().sum()

        per_sample = torch.vmap(torch.func.grad(loss, argnums=(0, 1)))(x1, x2)
        for i in range(3):
            expected = torch.func.grad(loss, argnums=(0, 1))(x1[i], x2[i])
            self.assertEqual(per_sample[0][i], expected[0])
            self.assertEqual(per_sample[1][i], expected[1])

        def batch_loss(a, b):
            return torch.vmap(loss)(a, b).sum()

        g1, g2 = torch.func.grad(batch_loss, argnums=(0, 1))(x1, x2)
        a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        sum(loss(a[i], b[i]) for i in range(3)).backward()
        self.assertEqual(g1, a.grad)
        self.assertEqual(g2, b.grad)

    @parametrize(
        "in_dims",
        [(0, 0, 0), (None, None, 0), (0, None, None), (None, 1, None), (2, 0, 1)],
    )
    @parametrize("logical_rank", [3, 4])
    def test_vmap_offset(self, in_dims, logical_rank):
        # Both rules with an offset, any of input1, input2 and offset
        # vmapped (input2 of its own size), against a loop: the forward, and
        # the backward with each three-element output_mask.
        shape1, shape2 = (
            (2, 4, 5, 6)[4 - logical_rank :],
            (2, 4, 3, 7)[4 - logical_rank :],
        )
        kw = dict(kernel_size=3, padding=1, displacement_stride=(-1, 1), groups=2)
        oshape = offset_shape(shape1, dict(kw, max_displacement=1))
        out_shape = (*oshape[:-3], 18, *oshape[-2:])

        x1 = vmap_input(shape1, in_dims[0], 1)
        x2 = vmap_input(shape2, in_dims[1], 2)
        offset = vmap_input(oshape, in_dims[2], 3, make_offset)

        def forward(a, b, o):
            return F.correlation(a, b, 1, offset=o, **kw)

        actual = torch.vmap(forward, in_dims=in_dims)(x1, x2, offset)
        for i in range(VMAP_BATCH):
            args = (vmap_sample(t, d, i) for t, d in zip((x1, x2, offset), in_dims))
            self.assertEqual(actual[i], forward(*args))

        grad_dim = 0 if in_dims[0] is None else None
        grad = vmap_input(out_shape, grad_dim, 4)
        dims = (grad_dim, *in_dims)
        for mask in ([True, True, True], [False, False, True], [True, False, False]):

            def backward(g, a, b, o, mask=mask):
                grads = correlation_backward(g, a, b, 1, mask, offset=o, **kw)
                self.assertEqual([g is not None for g in grads], mask)
                return tuple(g for g in grads if g is not None)

            actual = torch.vmap(backward, in_dims=dims)(grad, x1, x2, offset)
            for i in range(VMAP_BATCH):
                args = (
                    vmap_sample(t, d, i) for t, d in zip((grad, x1, x2, offset), dims)
                )
                expected = backward(*args)
                self.assertEqual(len(actual), len(expected))
                for got, want in zip(actual, expected):
                    self.assertEqual(got[i], want, msg=str(mask))


class TestCorrelationAutocast(TestCase):
    """Autocast kernels: lower-precision dtype like conv2d."""

    def test_autocast_cpu_bfloat16(self):
        x1, x2 = make_inputs((2, 4, 6, 6), torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = F.correlation(x1, x2, 1, kernel_size=3, padding=1)
            conv = F.conv2d(x1, torch.randn(2, 4, 3, 3))
            double = F.correlation(x1.double(), x2.double(), 1)
        self.assertEqual(out.dtype, torch.bfloat16)
        self.assertEqual(out.dtype, conv.dtype)
        self.assertEqual(double.dtype, torch.float64)  # float64 is left alone
        expected = F.correlation(
            x1.bfloat16(), x2.bfloat16(), 1, kernel_size=3, padding=1
        )
        self.assertEqual(out, expected)
        # The backward runs in the saved bfloat16 inputs and returns float32
        # gradients for the float32 leaves.
        a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            F.correlation(a, b, 1).float().sum().backward()
        self.assertEqual(a.grad.dtype, torch.float32)

    def test_autocast_cpu_bfloat16_offset(self):
        # The offset is cast with the inputs (float32 -> bfloat16); float64
        # calls are left alone; the backward returns float32 gradients for
        # all three float32 leaves.
        kwargs = dict(max_displacement=1, kernel_size=3, padding=1)
        max_d, kw = split(kwargs)
        x1, x2, offset = make_offset_inputs(
            (2, 4, 6, 6), (2, 4, 4, 5), kwargs, torch.float32
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = F.correlation(x1, x2, max_d, offset=offset, **kw)
            double = F.correlation(
                x1.double(), x2.double(), max_d, offset=offset.double(), **kw
            )
        self.assertEqual(out.dtype, torch.bfloat16)
        self.assertEqual(double.dtype, torch.float64)
        self.assertEqual(
            out,
            F.correlation(
                x1.bfloat16(), x2.bfloat16(), max_d, offset=offset.bfloat16(), **kw
            ),
        )
        self.assertEqual(
            double,
            F.correlation(
                x1.double(), x2.double(), max_d, offset=offset.double(), **kw
            ),
        )
        leaves = [t.clone().requires_grad_() for t in (x1, x2, offset)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = F.correlation(leaves[0], leaves[1], max_d, offset=leaves[2], **kw)
        out.float().sum().backward()
        self.assertEqual([t.grad.dtype for t in leaves], [torch.float32] * 3)

    @unittest.skipIf(not HAS_CUDA, "needs CUDA")
    def test_autocast_cuda_float16(self):
        x1, x2 = make_inputs((2, 4, 6, 6), torch.float32)
        x1, x2 = x1.cuda(), x2.cuda()
        with torch.autocast("cuda"):
            out = F.correlation(x1, x2, 1)
        self.assertEqual(out.dtype, torch.float16)
        self.assertEqual(out, F.correlation(x1.half(), x2.half(), 1))


class TestCorrelationModule(TestCase):
    """nn.Correlation: arguments, repr, equivalence with the functional."""

    def test_module(self):
        # [preview only begin]
        self.assertIs(torch.nn.Correlation, torch_correlation.Correlation)
        # [preview only end]
        module = torch.nn.Correlation(
            (2, 1), kernel_size=3, padding=1, groups=2, scale=0.5
        )
        self.assertEqual(
            repr(module),
            "Correlation(max_displacement=(2, 1), kernel_size=(3, 3), padding=(1, 1), "
            "groups=2, scale=0.5)",
        )
        self.assertEqual(
            repr(torch.nn.Correlation(4)), "Correlation(max_displacement=(4, 4))"
        )
        self.assertEqual(list(module.parameters()), [])
        self.assertEqual(module.state_dict(), {})
        x1, x2 = make_inputs((2, 4, 6, 5))
        self.assertEqual(
            module(x1, x2),
            F.correlation(
                x1, x2, (2, 1), kernel_size=3, padding=1, groups=2, scale=0.5
            ),
        )
        one_sided = torch.nn.Correlation((0, 0), min_displacement=(0, -3))
        self.assertEqual(
            one_sided(x1, x2), F.correlation(x1, x2, (0, 0), min_displacement=(0, -3))
        )
        self.assertIn("min_displacement=(0, -3)", repr(one_sided))
        descending = torch.nn.Correlation(
            (0, 0), min_displacement=(0, -3), displacement_stride=(1, -1), groups=2
        )
        self.assertEqual(
            repr(descending),
            "Correlation(max_displacement=(0, 0), min_displacement=(0, -3), "
            "displacement_stride=(1, -1), groups=2)",
        )
        self.assertEqual(
            descending(x1, x2),
            F.correlation(
                x1,
                x2,
                (0, 0),
                min_displacement=(0, -3),
                displacement_stride=(1, -1),
                groups=2,
            ),
        )


class TestCorrelationModuleInfo(TestCase):
    """The ModuleInfo of nn.Correlation (patch/moduleinfo.py) runs and matches."""

    def test_module_inputs(self):
        info = correlation_module_info()
        for dtype in (torch.float64, torch.float32):
            inputs = info.module_inputs_func(
                info, device="cpu", dtype=dtype, requires_grad=True, training=True
            )
            self.assertGreaterEqual(len(inputs), 4)
            for module_input in inputs:
                c_args, c_kwargs = (
                    module_input.constructor_input.args,
                    module_input.constructor_input.kwargs,
                )
                f_args, f_kwargs = (
                    module_input.forward_input.args,
                    module_input.forward_input.kwargs,
                )
                module = info.module_cls(*c_args, **c_kwargs)
                out = module(*f_args, **f_kwargs)
                self.assertEqual(
                    out, F.correlation(*f_args, *c_args, **c_kwargs, **f_kwargs)
                )
                if module_input.reference_fn is not None:
                    self.assertEqual(
                        out, module_input.reference_fn(module, *f_args, **f_kwargs)
                    )
                out.sum().backward()


class TestCorrelationFlopCounter(TestCase):
    """FlopCounterMode counts correlation and its backward."""

    def test_forward_and_backward(self):
        from torch.utils.flop_counter import FlopCounterMode

        # 2 flops per multiply-add; (C / groups) * k_h * k_w of them per output.
        x1, x2 = make_inputs((2, 6, 7, 8), torch.float32, requires_grad=True)
        kw = dict(kernel_size=3, padding=1, stride=(1, 2), groups=3)
        with FlopCounterMode(display=False) as counter:
            out = F.correlation(x1, x2, 2, **kw)
        self.assertEqual(out.shape, (2, 75, 7, 4))
        forward = 2 * (2 * 75 * 7 * 4) * (6 // 3) * 3 * 3
        self.assertEqual(counter.get_total_flops(), forward)
        self.assertEqual(counter.get_flop_counts()["Global"][aten.correlation], forward)
        with FlopCounterMode(display=False) as counter:
            out.sum().backward()
        # One forward's worth per input gradient.
        self.assertEqual(
            counter.get_flop_counts()["Global"][aten.correlation_backward], 2 * forward
        )
        x1.grad = None
        with FlopCounterMode(display=False) as counter:
            F.correlation(x1, x2.detach(), 2, **kw).sum().backward()
        self.assertEqual(counter.get_total_flops(), 2 * forward)

    def test_offset(self):
        from torch.utils.flop_counter import FlopCounterMode

        # With an offset every sample mixes four pixels: four times the
        # multiply-adds of the integer operator, in the forward and per
        # requested gradient (input1, input2, offset) in the backward.
        kwargs = dict(max_displacement=2, kernel_size=3, padding=1, groups=3)
        max_d, kw = split(kwargs)
        inputs = [
            t.requires_grad_()
            for t in make_offset_inputs(
                (2, 6, 7, 8), (2, 6, 4, 5), kwargs, torch.float32
            )
        ]
        with FlopCounterMode(display=False) as counter:
            out = F.correlation(inputs[0], inputs[1], max_d, offset=inputs[2], **kw)
        forward = 4 * 2 * (2 * 75 * 7 * 8) * (6 // 3) * 3 * 3
        self.assertEqual(counter.get_flop_counts()["Global"][aten.correlation], forward)
        for needs_grad, gradients in (
            ((True, True, True), 3),
            ((True, True, False), 2),
            ((False, False, True), 1),
        ):
            for t, flag in zip(inputs, needs_grad):
                t.requires_grad_(flag)
            out = F.correlation(inputs[0], inputs[1], max_d, offset=inputs[2], **kw)
            with FlopCounterMode(display=False) as counter:
                out.sum().backward()
            self.assertEqual(
                counter.get_flop_counts()["Global"][aten.correlation_backward],
                gradients * forward,
                msg=str(needs_grad),
            )


instantiate_parametrized_tests(TestCorrelationDecomposition)
instantiate_parametrized_tests(TestCorrelationVmap)

if __name__ == "__main__":
    run_tests()
