# Owner(s): ["module: nn"]

"""nn.Correlation with ``offset``: the module passes it through to the operator.

* TestCorrelationModuleOffset: ``forward(input1, input2, offset=None)``
  equals F.correlation with the same offset (batched and unbatched,
  positional and keyword, an input2 of another size), ``offset=None`` is the
  integer op, TorchScript keeps the optional argument, and the examples of
  the module's docstring run.
* TestCorrelationModuleInfoOffset: every sample of the ModuleInfo
  (patch/moduleinfo.py), keyword arguments of the forward included, matches
  the functional and its reference function; the offset samples pass
  gradcheck and gradgradcheck with respect to the inputs, as the generic
  module tests run them.
"""

import doctest
import os
import sys

import torch
import torch.nn.functional as F
import torch_correlation
from torch.autograd import gradcheck, gradgradcheck
from torch.testing._internal.common_utils import run_tests, TestCase

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correlation_reference import correlation_module_info


def _tensors(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype)


class TestCorrelationModuleOffset(TestCase):
    def test_forward_passes_offset(self):
        # [preview only begin]
        self.assertIs(torch.nn.Correlation, torch_correlation.Correlation)
        # [preview only end]
        module = torch.nn.Correlation((2, 1), kernel_size=3, padding=1, scale=0.5)
        x1 = _tensors((2, 4, 6, 5))
        x2 = _tensors((2, 4, 9, 7), seed=1)
        offset = 3 * _tensors((2, 2, 6, 5), seed=2)
        expected = F.correlation(
            x1, x2, (2, 1), offset=offset, kernel_size=3, padding=1, scale=0.5
        )
        self.assertEqual(module(x1, x2, offset), expected)
        self.assertEqual(module(x1, x2, offset=offset), expected)
        # Unbatched.
        self.assertEqual(module(x1[1], x2[1], offset[1]), expected[1])
        # offset=None is the integer op (input2 then has input1's shape).
        self.assertEqual(
            module(x1, x1.flip(-1), None),
            F.correlation(x1, x1.flip(-1), (2, 1), kernel_size=3, padding=1, scale=0.5),
        )

    def test_torchscript(self):
        module = torch.nn.Correlation(1, groups=2)
        scripted = torch.jit.script(module)
        x1 = _tensors((1, 4, 5, 6))
        x2 = _tensors((1, 4, 3, 8), seed=1)
        offset = _tensors((1, 2, 5, 6), seed=2)
        self.assertEqual(scripted(x1, x2, offset), module(x1, x2, offset))
        self.assertEqual(scripted(x1, x1), module(x1, x1))

    def test_docstring_examples(self):
        # The module's examples are not collected by the docs build (only the
        # functional's are), so they run here.
        finder = doctest.DocTestFinder()
        runner = doctest.DocTestRunner(
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        )
        globs = {"torch": torch, "nn": torch.nn, "F": F}
        (test,) = finder.find(torch.nn.Correlation, "Correlation", globs=globs)
        result = runner.run(test)
        self.assertGreater(result.attempted, 0)
        self.assertEqual(result.failed, 0)


class TestCorrelationModuleInfoOffset(TestCase):
    def test_samples_with_kwargs(self):
        info = correlation_module_info()
        inputs = info.module_inputs_func(
            info, device="cpu", dtype=torch.float64, requires_grad=True, training=True
        )
        with_offset = [m for m in inputs if "offset" in m.forward_input.kwargs]
        self.assertGreaterEqual(len(with_offset), 2)
        for module_input in inputs:
            c = module_input.constructor_input
            f = module_input.forward_input
            module = info.module_cls(*c.args, **c.kwargs)
            out = module(*f.args, **f.kwargs)
            self.assertEqual(
                out, F.correlation(*f.args, *c.args, **c.kwargs, **f.kwargs)
            )
            if module_input.reference_fn is not None:
                self.assertEqual(
                    out, module_input.reference_fn(module, *f.args, **f.kwargs)
                )
            out.sum().backward()

    def test_offset_samples_gradgradcheck(self):
        info = correlation_module_info()
        inputs = info.module_inputs_func(
            info, device="cpu", dtype=torch.float64, requires_grad=True, training=True
        )
        for module_input in inputs:
            f = module_input.forward_input
            if "offset" not in f.kwargs:
                continue
            c = module_input.constructor_input
            module = info.module_cls(*c.args, **c.kwargs)
            offset = f.kwargs["offset"]
            # The generic tests differentiate only what requires grad.
            self.assertFalse(offset.requires_grad)

            def fn(x1, x2, module=module, offset=offset):
                return module(x1, x2, offset=offset)

            self.assertTrue(gradcheck(fn, f.args, fast_mode=True))
            self.assertTrue(gradgradcheck(fn, f.args, fast_mode=True))

    def test_offset_layouts(self):
        # The generic tests also run the samples with channels_last and
        # non-contiguous tensors, the offset included.
        module = torch.nn.Correlation(1, scale=0.5)
        x1 = _tensors((2, 3, 5, 6))
        x2 = _tensors((2, 3, 4, 8), seed=1)
        offset = 2 * _tensors((2, 2, 5, 6), seed=2)
        expected = module(x1, x2, offset)
        channels_last = offset.to(memory_format=torch.channels_last)
        strided = torch.stack([offset, offset], -1)[..., 0]
        self.assertFalse(strided.is_contiguous())
        for off in (channels_last, strided):
            self.assertEqual(module(x1, x2, off), expected)


if __name__ == "__main__":
    run_tests()
