# Owner(s): ["module: nn"]

"""Tests of tools/apply_patch.py on small synthetic PyTorch roots.

Each test builds a miniature PyTorch checkout (only the files and anchors the
patch touches) and a miniature source tree (this repository's patch inputs),
so the tests are fast and independent of the compiled extension and of the
real sources. ``tools/check_patch.py`` runs the same tool on the real sources
and the files of the installed wheel.
"""

import ast
import hashlib
import inspect
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import apply_patch as ap
from correlation_patch import model, pyedit


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


PYTORCH_FILES = {
    "aten/src/ATen/native/native_functions.yaml": """
        - func: grid_sampler_3d(Tensor input, Tensor grid, int interpolation_mode, int padding_mode, bool align_corners) -> Tensor
          dispatch:
            CPU: grid_sampler_3d_cpu
          autogen: grid_sampler_3d.out

        # `grid_sampler_3d_backward` takes in `output_mask`.
        - func: grid_sampler_3d_backward(Tensor grad_output, Tensor input, Tensor grid, int interpolation_mode, int padding_mode, bool align_corners, bool[2] output_mask) -> (Tensor, Tensor)
          dispatch:
            CPU: grid_sampler_3d_backward_cpu
          autogen: grid_sampler_3d_backward.out

        - func: hann_window(int window_length) -> Tensor
        """,
    "aten/src/ATen/native/Activation.cpp": "// upstream file\n",
    "tools/autograd/derivatives.yaml": """
        - name: grid_sampler_3d_backward(Tensor grad_output, Tensor input, Tensor grid, int interpolation_mode, int padding_mode, bool align_corners, bool[2] output_mask) -> (Tensor, Tensor)
          grad_output, input, grid: grid_sampler_3d_double_backward(grads[0], grads[1], grad_output, input, grid, interpolation_mode, padding_mode, align_corners, grad_input_mask)

        # See NOTE [ grid_sample CPU fallback ]
        - name: gt_.Scalar(Tensor(a!) self, Scalar other) -> Tensor(a!)
          self: zeros_like(self)
        """,
    "torch/csrc/autograd/FunctionsManual.h": """
        #pragma once
        namespace torch::autograd::generated::details {

        Tensor values_backward(const Tensor& grad, const Tensor& self);

        } // namespace torch::autograd::generated::details
        """,
    "torch/csrc/autograd/FunctionsManual.cpp": """
        #include <torch/csrc/autograd/FunctionsManual.h>
        namespace torch::autograd::generated::details {

        Tensor values_backward(const Tensor& grad, const Tensor& self) {
          return grad;
        }

        } // namespace torch::autograd::generated::details
        """,
    "aten/src/ATen/autocast_mode.h": """
        #define AT_FORALL_LOWER_PRECISION_FP(_)  \\
          _(_convolution)                        \\
          _(conv1d)                              \\
          _(conv2d)                              \\
          _(conv3d)                              \\
          _(scaled_dot_product_attention)

        #define AT_FORALL_FP32(_) \\
          _(acos)
        """,
    "torch/_subclasses/fake_tensor.py": """
        from torch.utils._ordered_set import OrderedSet as ordered_set


        class FakeTensorMode:
            _cpp_meta_supports_symint = ordered_set(
                "aten.empty.memory_format",
                "aten.stack.default",
            )
        """,
    "aten/src/ATen/autocast_mode.cpp": """
        TORCH_LIBRARY_IMPL(aten, AutocastCPU, m) {
          // lower_precision_fp cast policy
          KERNEL_CPU(conv1d, lower_precision_fp)
          KERNEL_CPU(conv2d, lower_precision_fp)
          KERNEL_CPU(conv2d, padding, lower_precision_fp)
        }
        """,
    "aten/src/ATen/native/Correlation.cpp": "// upstream: torch.cov and torch.corrcoef\n",
    "aten/src/ATen/functorch/BatchRulesConvolution.cpp": "// upstream file\n",
    "build_variables.bzl": """
        aten_native_source_codegen_list = [
            "aten/src/ATen/native/cpu/Activation.cpp",
            "aten/src/ATen/native/cpu/GridSamplerKernel.cpp",
            "aten/src/ATen/native/cpu/HistogramKernel.cpp",
        ]

        aten_native_source_non_codegen_list = [
            "aten/src/ATen/native/Correlation.cpp",
            "aten/src/ATen/native/GridSampler.cpp",
            "aten/src/ATen/native/Histogram.cpp",
        ]

        aten_cuda_cu_source_list = [
            "aten/src/ATen/native/cuda/GridSampler.cpp",
        ]
        """,
    "docs/source/amp.md": """
        #### CUDA Ops that can autocast to `float16`

        `conv1d`,
        `conv2d`,
        `conv3d`,
        `RNNCell`

        #### XPU Ops that can autocast to `float16`

        `conv1d`,
        `conv2d`,
        `RNNCell`

        #### CPU Ops that can autocast to `bfloat16`

        `conv1d`,
        `conv2d`,
        `conv3d`
        """,
    "torch/nn/functional.py": '''
        """Functional interface."""

        from typing import Any as _Any, Optional, TYPE_CHECKING

        import torch
        from torch import Tensor
        from torch._C import _add_docstr
        from torch.overrides import handle_torch_function, has_torch_function_variadic

        if TYPE_CHECKING:
            from torch.types import _dtype as DType


        def grid_sample(input: Tensor, grid: Tensor) -> Tensor:
            """Sample."""
            return torch.grid_sampler(input, grid, 0, 0, False)


        def affine_grid(theta: Tensor, size: list[int]) -> Tensor:
            return theta
        ''',
    "tools/pyi/gen_pyi.py": """
        def defs(name: str, args: list[str], return_type: str) -> str:
            return f"def {name}({', '.join(args)}) -> {return_type}: ..."


        def gen_nn_functional(fm) -> None:
            unsorted_c_nn_function_hints: dict[str, list[str]] = {}
            unsorted_c_nn_function_hints.update(
                {
                    "one_hot": [
                        defs("one_hot", ["tensor: Tensor", "num_classes: int = ..."], "Tensor")
                    ],
                    "pad": [defs("pad", ["input: Tensor"], "Tensor")],
                }
            )
            c_nn_imports = [
                "avg_pool2d",
                "elu_",
                "pad",
            ]
        """,
    "torch/nn/__init__.py": """
        from torch.nn.modules import *  # usort: skip # noqa: F403
        """,
    "torch/nn/modules/__init__.py": """
        from .module import Module  # usort: skip
        from .conv import (
            Conv1d,
            Conv2d,
        )
        from .distance import CosineSimilarity, PairwiseDistance


        __all__ = [
            "Conv1d",
            "Conv2d",
            "CosineSimilarity",
            "Module",
            "PairwiseDistance",
        ]
        """,
    "torch/overrides.py": """
        import torch


        def get_testing_overrides():
            Tensor = torch.Tensor
            ret = {
                torch.nn.functional.celu: lambda input, alpha=1.0, inplace=False: -1,
                torch.nn.functional.cosine_embedding_loss: (
                    lambda input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean": -1
                ),
                torch.nn.functional.grid_sample: lambda input, grid: -1,
            }
            return ret
        """,
    "torch/utils/flop_counter.py": """
        from typing import Any

        import torch

        aten = torch.ops.aten
        flop_registry: dict[Any, Any] = {}


        def register_flop_formula(targets, get_raw=False):
            return lambda f: f


        @register_flop_formula(aten.convolution_backward)
        def conv_backward_flop(grad_out_shape, x_shape, *args, **kwargs) -> int:
            return 0


        def sdpa_flop_count(query_shape, key_shape, value_shape):
            return 0


        flop_registry = {
            aten.mm: mm_flop,
            aten.convolution_backward: conv_backward_flop,
            aten._scaled_dot_product_efficient_attention: sdpa_flop,
        }
        """,
    "torch/testing/_internal/common_modules.py": """
        import torch
        from torch.testing._internal.common_modules import FunctionInput, ModuleInfo, ModuleInput


        def module_inputs_torch_nn_FractionalMaxPool3d(module_info, device, dtype, requires_grad, training, **kwargs):
            return []


        def module_inputs_torch_nn_Sigmoid(module_info, device, dtype, requires_grad, training, **kwargs):
            return []


        module_db: list[ModuleInfo] = [
            ModuleInfo(torch.nn.FractionalMaxPool3d,
                       module_inputs_func=module_inputs_torch_nn_FractionalMaxPool3d,
                       ),
            ModuleInfo(torch.nn.L1Loss,
                       module_inputs_func=module_inputs_torch_nn_Sigmoid,
                       ),
        ]
        """,
    "torch/testing/_internal/common_mps.py": """
        import torch

        if torch.backends.mps.is_available():

            def mps_ops_modifier(ops, device_type="mps", xfail_exclusion=None, sparse=False):
                UNIMPLEMENTED_XFAILLIST: dict[str, list | None] = {
                    # Failures due to lack of op implementation on MPS backend
                    "logspace": None,
                    "bincount": [
                        torch.int16,
                    ],
                }
                return ops
        else:

            def mps_ops_modifier(ops, device_type="mps", xfail_exclusion=None, sparse=False):
                return ops
        """,
    "torch/_decomp/decompositions.py": """
        from typing import Any, cast

        import torch
        import torch._prims_common as utils
        from torch import Tensor
        from torch._decomp import register_decomposition
        from torch._prims_common.wrappers import out_wrapper

        aten = torch._ops.ops.aten


        @register_decomposition(aten.grid_sampler_2d)
        @out_wrapper()
        def grid_sampler_2d(a: Tensor, grid: Tensor) -> Tensor:
            return a


        @register_decomposition(aten.mv)
        def mv(self, vec):
            return self
        """,
    "torch/_decomp/__init__.py": """
        import torch


        def get_decompositions(ops):
            return {}


        def _core_aten_decompositions_post_autograd():
            aten = torch.ops.aten
            return get_decompositions(
                [
                    aten.addcdiv,
                    aten.col2im,
                    aten.count_nonzero,
                ]
            )
        """,
    "torch/_inductor/decomposition.py": """
        import torch

        aten = torch.ops.aten
        decomps_to_exclude: list = [
            aten._unsafe_index,
            aten.lerp_,
        ]
        """,
    "torch/_inductor/lowering.py": """
        import torch

        aten = torch.ops.aten


        def make_fallback(op, layout_constraint=None, warn=True, override_decomp=False):
            pass


        # 1.5) Easy or Impossible
        make_fallback(aten._cdist_forward)  # p=2 should be feasible
        make_fallback(aten._cdist_backward)

        # 2) Medium
        make_fallback(aten._trilinear)
        """,
    "torch/_dynamo/trace_rules.py": """
        torch_c_binding_in_graph_functions = dict.fromkeys(
            [
                "torch._C._nn.col2im",
                "torch._C._nn.cross_entropy_loss",
            ],
            "TorchInGraphFunctionVariable",
        )
        torch_non_c_binding_in_graph_functions = dict.fromkeys(
            [
                "torch.nn.functional.celu",
                "torch.nn.functional.cosine_embedding_loss",
            ],
            "TorchInGraphFunctionVariable",
        )
        """,
    "torch/testing/_internal/common_methods_invocations.py": """
        from functools import partial

        import torch
        from torch.testing import make_tensor
        from torch.testing._internal.common_dtype import floating_types_and
        from torch.testing._internal.opinfo.core import OpInfo, SampleInput


        def sample_inputs_grid_sample(op_info, device, dtype, requires_grad, **kwargs):
            yield SampleInput(make_tensor((2, 3), device=device, dtype=dtype))

        def sample_inputs_grid_sampler_3d(op_info, device, dtype, requires_grad, **kwargs):
            yield SampleInput(make_tensor((2, 3), device=device, dtype=dtype))

        def sample_inputs_cosine_embedding_loss(op_info, device, dtype, requires_grad, **kwargs):
            yield SampleInput(make_tensor((2, 3), device=device, dtype=dtype))


        op_db: list[OpInfo] = [
            OpInfo(
                "nn.functional.grid_sample",
                sample_inputs_func=sample_inputs_grid_sample,
                supports_gradgrad=True),
            OpInfo(
                "grid_sampler_2d",
                sample_inputs_func=sample_inputs_grid_sample,
            ),
        ]
        """,
    "test/expect/HasDecompTest.test_has_decomposition.expect": """
        aten::_upsample_bilinear2d_aa
        aten::cudnn_convolution
        aten::grid_sampler_3d_backward
        aten::grid_sampler_3d_backward.out
        aten::zeros.names_out
        """,
    "docs/source/nn.functional.md": """
        # torch.nn.functional

        ## Vision functions

        ```{eval-rst}
        .. autosummary::
            :toctree: generated
            :nosignatures:

            pixel_shuffle
            grid_sample
            affine_grid
        ```

        ## DataParallel functions (multi-GPU, distributed)
        """,
    "docs/source/nn.md": """
        # torch.nn

        ## Vision Layers

        ```{eval-rst}
        .. autosummary::
            :toctree: generated
            :nosignatures:
            :template: classtemplate.rst

            nn.PixelShuffle
            nn.UpsamplingBilinear2d
        ```

        ## Shuffle Layers

        ```{eval-rst}
        .. py:module:: torch.nn.modules.conv
        .. py:module:: torch.nn.modules.distance
        ```
        """,
}

FUNCTIONAL_SOURCE = '''
    """Preview: the documented binding."""

    import torch
    from torch._C import _add_docstr

    # [correlation begin]
    correlation = _add_docstr(
        torch._C._nn.correlation,
        r"""
    correlation(input1, input2, max_displacement, *, min_displacement=None, groups=1, scale=1.0) -> Tensor

    Cost volume.
    """,
    )
    # [correlation end]
    '''

SOURCE_FILES = {
    "aten_native/SpatialCorrelationUtils.h": "#pragma once\n// checks\n",
    "aten_native/SpatialCorrelation.cpp": "// entry\n",
    "aten_native/cpu/SpatialCorrelationKernel.h": "#pragma once\n",
    "aten_native/cpu/SpatialCorrelationKernel.cpp": "// kernels\n",
    "aten_native/cpu/SpatialCorrelationNarrowKernel.h": "#pragma once\n",
    "aten_native/cpu/SpatialCorrelationOffsetBlocks.h": "#pragma once\n",
    "aten_native/cpu/SpatialCorrelationOffsetKernel.cpp": "// offset kernels\n",
    "aten_native/cuda/SpatialCorrelation.cu": "// cuda kernels\n",
    "aten_native/cuda/SpatialCorrelation.cuh": "// cuda device code\n",
    "aten_native/cuda/SpatialCorrelationOffset.cuh": "// cuda offset device code\n",
    "aten_native/cuda/.SpatialCorrelation.cu.swp": "editor junk, never copied\n",
    "aten_functorch/BatchRulesSpatialCorrelation.cpp": "// batch rules\n",
    "native_functions_patch.yaml": """
        # Entries for native_functions.yaml; this header is not copied.
        #
        # correlation computes the local cost volume.
        - func: correlation(Tensor input1, Tensor input2, int[2] max_displacement, *, int[2]? min_displacement=None, int groups=1, float scale=1.0) -> Tensor
          python_module: nn
          dispatch:
            CPU, CUDA: correlation
          autogen: correlation.out

        - func: correlation_backward(Tensor grad_output, Tensor input1, Tensor input2, int[2] max_displacement, int[2]? min_displacement, int groups, float scale, bool[2] output_mask) -> (Tensor, Tensor)
          python_module: nn
          dispatch:
            CPU, CUDA: correlation_backward
          autogen: correlation_backward.out
        """,
    "derivatives_patch.yaml": """
        # Entries for derivatives.yaml; this header is not copied.
        - name: correlation(Tensor input1, Tensor input2, int[2] max_displacement, *, int[2]? min_displacement=None, int groups=1, float scale=1.0) -> Tensor
          input1, input2: "grad.defined() ? correlation_backward(grad, input1, input2, max_displacement, min_displacement, groups, scale, grad_input_mask) : std::tuple<Tensor, Tensor>()"
        """,
    "torch_correlation/functional.py": FUNCTIONAL_SOURCE,
    "torch_correlation/modules.py": '''
        from typing import Optional

        import torch.nn.functional as F
        from torch import Tensor
        from torch.nn import Module
        from torch.nn.modules.utils import _pair


        # [module begin]
        class Correlation(Module):
            """Module."""

            def __init__(self, max_displacement, *, min_displacement: Optional[int] = None) -> None:
                super().__init__()
                self.max_displacement = _pair(max_displacement)
                self.min_displacement = min_displacement

            def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
                return F.correlation(input1, input2, self.max_displacement, min_displacement=self.min_displacement)
        # [module end]
        ''',
    "torch_correlation/_flop_counter.py": """
        from torch.utils.flop_counter import register_flop_formula

        # [correlation begin]
        @register_flop_formula(aten.correlation)
        def correlation_flop(input1_shape, input2_shape, *args, out_shape=None, **kwargs) -> int:
            return 2


        @register_flop_formula([aten.correlation_backward])
        def correlation_backward_flop(grad_out_shape, *args, out_shape=None, **kwargs) -> int:
            return 4
        # [correlation end]
        """,
    "patch/moduleinfo.py": """
        # [module_inputs begin]
        def module_inputs_torch_nn_Correlation(module_info, device, dtype, requires_grad, training, **kwargs):
            return [ModuleInput(constructor_input=FunctionInput(1), forward_input=FunctionInput())]
        # [module_inputs end]

        module_db = [
            # [moduleinfo begin]
            ModuleInfo(torch.nn.Correlation,
                       module_inputs_func=module_inputs_torch_nn_Correlation,
                       ),
            # [moduleinfo end]
        ]
        """,
    "torch_correlation/_decomp.py": """
        # [decomp begin]
        @register_decomposition(aten.correlation)
        @out_wrapper()
        def correlation(input1: Tensor, input2: Tensor, max_displacement: list[int], min_displacement: Optional[list[int]] = None) -> Tensor:
            return input1 * input2
        # [decomp end]
        """,
    "csrc/autograd/FunctionsManual_correlation.h": """
        #pragma once
        // [correlation begin]
        std::tuple<Tensor, Tensor, Tensor> correlation_double_backward(const Tensor& gg1);
        // [correlation end]
        """,
    "csrc/autograd/FunctionsManual_correlation.cpp": """
        // [correlation begin]
        std::tuple<Tensor, Tensor, Tensor> correlation_double_backward(const Tensor& gg1) {
          return {};
        }
        // [correlation end]
        """,
    "test/test_correlation.py": """
        import torch
        import torch_correlation  # noqa: F401  (registers aten::correlation)
        from torch.testing._internal.common_utils import run_tests, TestCase


        class TestCorrelation(TestCase):
            def test_installed(self):
                self.assertIs(torch.nn.functional.correlation, torch_correlation.correlation)  # [preview only]
                # [preview only begin]
                print(torch_correlation.__file__)
                # [preview only end]
                self.assertTrue(hasattr(torch.ops.aten, "correlation"))


        if __name__ == "__main__":
            run_tests()
        """,
    "test/test_correlation_hypothesis.py": "import torch\n",
    "test/test_correlation_pt2.py": "import torch\n",
    "test/test_correlation_narrow.py": "import torch\n",
    "test/test_correlation_offset.py": "import torch\n",
    "test/test_correlation_module_offset.py": "import torch\n",
    "test/correlation_reference.py": "def correlation_reference():\n    pass\n",
}


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text), encoding="utf-8")


def digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def trees(tmp_path):
    pytorch, sources = tmp_path / "pytorch", tmp_path / "sources"
    write_tree(pytorch, PYTORCH_FILES)
    write_tree(sources, SOURCE_FILES)
    for name in ("opinfo.py", "module_header.py"):
        shutil.copyfile(REPO / "patch" / name, sources / "patch" / name)
    return pytorch, sources


def run_main(capsys, pytorch, sources, *extra):
    code = ap.main([str(pytorch), "--source-root", str(sources), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def read(root: Path, rel: str) -> str:
    return (root / rel).read_text(encoding="utf-8")


UNTOUCHED = (
    "torch/nn/__init__.py",
    "aten/src/ATen/native/Activation.cpp",
    "aten/src/ATen/native/Correlation.cpp",
    "aten/src/ATen/functorch/BatchRulesConvolution.cpp",
)


def test_apply_then_idempotent(trees, capsys):
    pytorch, sources = trees
    code, out, err = run_main(capsys, pytorch, sources)
    assert code == 0, err
    applied = digest(pytorch)
    for rel in [
        "aten/src/ATen/native/SpatialCorrelation.cpp",
        "aten/src/ATen/native/cuda/SpatialCorrelation.cu",
        "aten/src/ATen/functorch/BatchRulesSpatialCorrelation.cpp",
        "torch/nn/modules/correlation.py",
        "test/nn/test_correlation.py",
        "test/nn/correlation_reference.py",
    ]:
        assert rel in applied
    assert "aten/src/ATen/native/cuda/.SpatialCorrelation.cu.swp" not in applied
    for rel in PYTORCH_FILES:
        if rel not in UNTOUCHED:
            assert read(pytorch, rel) != dedent(PYTORCH_FILES[rel]), (
                f"{rel} was not patched"
            )

    code, out, err = run_main(capsys, pytorch, sources)
    assert code == 0, err
    assert "nothing to do" in out
    assert digest(pytorch) == applied


def test_check_reports_and_writes_nothing(trees, capsys):
    pytorch, sources = trees
    before = digest(pytorch)
    code, out, _ = run_main(capsys, pytorch, sources, "--check")
    assert code == ap.EXIT_PENDING
    assert "would modify aten/src/ATen/native/native_functions.yaml" in out
    assert "would create torch/nn/modules/correlation.py" in out
    assert digest(pytorch) == before
    assert run_main(capsys, pytorch, sources)[0] == 0
    code, out, _ = run_main(capsys, pytorch, sources, "--check")
    assert code == 0 and "nothing to do" in out


def test_yaml_entries_placement(trees, capsys):
    pytorch, sources = trees
    assert run_main(capsys, pytorch, sources)[0] == 0
    native = read(pytorch, "aten/src/ATen/native/native_functions.yaml")
    assert "this header is not copied" not in native
    assert "# correlation computes the local cost volume." in native
    backward_end = native.index("  autogen: grid_sampler_3d_backward.out\n")
    ours = native.index("- func: correlation(")
    assert backward_end < ours < native.index("- func: hann_window(")
    assert "autogen: grid_sampler_3d_backward.out\n\n# correlation computes" in native
    assert "autogen: correlation_backward.out\n\n- func: hann_window" in native
    derivatives = read(pytorch, "tools/autograd/derivatives.yaml")
    assert (
        derivatives.index("- name: grid_sampler_3d_backward(")
        < derivatives.index("- name: correlation(")
        < derivatives.index("# See NOTE [ grid_sample CPU fallback ]")
    )


def test_python_edits(trees, capsys):
    pytorch, sources = trees
    assert run_main(capsys, pytorch, sources)[0] == 0
    functional = read(pytorch, "torch/nn/functional.py")
    assert (
        functional.index("def grid_sample(")
        < functional.index("correlation = _add_docstr(")
        < functional.index("def affine_grid(")
    )
    assert (
        "return torch.grid_sampler(input, grid, 0, 0, False)\n\n\ncorrelation = _add_docstr("
        in functional
    )
    assert 'Cost volume.\n""",\n)\n\n\ndef affine_grid(' in functional

    modules_init = read(pytorch, "torch/nn/modules/__init__.py")
    assert (
        ")\nfrom .correlation import Correlation\nfrom .distance import" in modules_init
    )
    names = ast.literal_eval(modules_init.split("__all__ = ")[1])
    assert "Correlation" in names and names == sorted(names)

    module = read(pytorch, "torch/nn/modules/correlation.py")
    assert module.startswith(
        "from typing import Optional\n\nimport torch.nn.functional as F\n"
    )
    assert "import torch\n" not in module  # unused header imports are dropped
    assert (
        'from .utils import _pair\n\n\n__all__ = ["Correlation"]\n\n\nclass Correlation(Module):'
        in module
    )
    compile(module, "correlation.py", "exec")

    decomp = read(pytorch, "torch/_decomp/decompositions.py")
    assert (
        "from typing import Any, cast\nfrom typing import Optional\n" in decomp
    )  # upstream lines kept
    assert (
        decomp.index("def grid_sampler_2d(")
        < decomp.index("def correlation(")
        < decomp.index("def mv(")
    )
    core = read(pytorch, "torch/_decomp/__init__.py")
    assert (
        "aten.col2im,\n            aten.correlation,\n            aten.count_nonzero,"
        in core
    )
    inductor = read(pytorch, "torch/_inductor/decomposition.py")
    assert (
        "    aten.lerp_,\n    aten.correlation,  # inductor calls the native kernel\n]"
        in inductor
    )
    lowering = read(pytorch, "torch/_inductor/lowering.py")
    assert (
        "make_fallback(aten._cdist_backward)\n# correlation: the native kernels (any strides) rather than "
        "the core ATen\n# decomposition, which stays for export and ONNX.\n"
        "make_fallback(aten.correlation, warn=False)\nmake_fallback(aten.correlation_backward)\n\n# 2) Medium"
    ) in lowering
    rules = read(pytorch, "torch/_dynamo/trace_rules.py")
    assert '"torch._C._nn.col2im",\n        "torch._C._nn.correlation",\n' in rules
    assert (
        "torch.nn.functional.correlation" not in rules
    )  # F.correlation is the torch._C._nn binding

    opinfo = read(pytorch, "torch/testing/_internal/common_methods_invocations.py")
    assert (
        opinfo.index("def sample_inputs_grid_sampler_3d(")
        < opinfo.index("def sample_inputs_correlation(")
        < opinfo.index("def sample_inputs_cosine_embedding_loss(")
    )
    assert (
        'supports_gradgrad=True),\n    OpInfo(\n        "nn.functional.correlation",'
        in opinfo
    )
    for rel in PYTORCH_FILES:
        if rel.endswith(".py"):
            compile(read(pytorch, rel), rel, "exec")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("def a():\n    pass\n", "def a():\n    pass\n\ndef b():\n    pass\n"),
        (
            "def a():\n    pass\n    # trailing\n\n\nx = 1\n",
            "def a():\n    pass\n    # trailing\n\n\ndef b():\n    pass\n\n\nx = 1\n",
        ),
        (
            "def a():\n    pass\n\n# about x\nx = 1\n",
            "def a():\n    pass\n\ndef b():\n    pass\n\n# about x\nx = 1\n",
        ),
    ],
)
def test_insert_after_def_spacing(text, expected):
    assert pyedit.insert_after_def(text, "m.py", "a", "def b():\n    pass") == expected


def test_signature_derived_from_the_schema(trees, capsys):
    """The testing override and the stub come from the yaml schema (the binding has no Python signature)."""
    pytorch, sources = trees
    assert run_main(capsys, pytorch, sources)[0] == 0
    overrides = read(pytorch, "torch/overrides.py")
    start = overrides.index("torch.nn.functional.correlation: (")
    assert (
        overrides.index("torch.nn.functional.celu:")
        < start
        < overrides.index("torch.nn.functional.cosine_embedding_loss:")
    )
    lam = eval(overrides[start:].split("\n")[1].strip())
    spec = inspect.getfullargspec(lam)
    assert spec.args == ["input1", "input2", "max_displacement"]
    assert spec.kwonlydefaults == {"min_displacement": None, "groups": 1, "scale": 1.0}
    pyi = read(pytorch, "tools/pyi/gen_pyi.py")
    assert """"pad",\n        "correlation",\n""" not in pyi
    assert '    "avg_pool2d",\n        "correlation",\n        "elu_",\n' in pyi
    hint = pyi[pyi.index('"correlation": [') :]
    assert (
        pyi.index('"one_hot": [')
        < pyi.index('"correlation": [')
        < pyi.index('"pad": [')
    )
    assert '"max_displacement: _int | _size",\n' in hint
    assert '"min_displacement: _int | _size | None = None",\n' in hint
    assert '"groups: int = 1",\n                        "scale: float = 1.0",\n' in hint
    namespace = {}
    exec(pyi, namespace)  # the hint table still evaluates


def test_other_edits(trees, capsys):
    pytorch, sources = trees
    assert run_main(capsys, pytorch, sources)[0] == 0
    autocast = read(pytorch, "aten/src/ATen/autocast_mode.h")
    assert (
        "  _(conv2d)                              \\\n  _(correlation)                         \\\n  _(conv3d)"
        in autocast
    )
    amp = read(pytorch, "docs/source/amp.md")
    assert (
        amp.count("`conv2d`,\n`correlation`,\n") == 3
    )  # CUDA and XPU float16, CPU bfloat16
    assert amp.rstrip().endswith("`conv2d`,\n`correlation`,\n`conv3d`")
    fake = read(pytorch, "torch/_subclasses/fake_tensor.py")
    assert (
        '"aten.stack.default",\n        aten.correlation.default,\n        aten.correlation.out,\n    )'
        in fake
    )
    autocast_cpu = read(pytorch, "aten/src/ATen/autocast_mode.cpp")
    assert (
        "  KERNEL_CPU(conv2d, lower_precision_fp)\n  KERNEL_CPU(correlation, lower_precision_fp)\n"
        "  KERNEL_CPU(conv2d, padding, lower_precision_fp)" in autocast_cpu
    )
    build = read(pytorch, "build_variables.bzl")
    assert (
        '"aten/src/ATen/native/cpu/GridSamplerKernel.cpp",\n    "aten/src/ATen/native/cpu/SpatialCorrelationKernel.cpp",\n'
        in build
    )
    assert (
        '"aten/src/ATen/native/GridSampler.cpp",\n    "aten/src/ATen/native/SpatialCorrelation.cpp",\n'
        in build
    )
    assert ".cu" not in build and '.h"' not in build and "functorch" not in build
    flop = read(pytorch, "torch/utils/flop_counter.py")
    assert (
        flop.index("def conv_backward_flop(")
        < flop.index("def correlation_flop(")
        < flop.index("def sdpa_flop_count(")
    )
    assert (
        "    aten.convolution_backward: conv_backward_flop,\n    aten.correlation: correlation_flop,\n"
        "    aten.correlation_backward: correlation_backward_flop,\n" in flop
    )
    modules = read(pytorch, "torch/testing/_internal/common_modules.py")
    assert (
        modules.index("def module_inputs_torch_nn_FractionalMaxPool3d(")
        < modules.index("def module_inputs_torch_nn_Correlation(")
        < modules.index("def module_inputs_torch_nn_Sigmoid(")
    )
    assert (
        modules.index("ModuleInfo(torch.nn.FractionalMaxPool3d,")
        < modules.index("ModuleInfo(torch.nn.Correlation,")
        < modules.index("ModuleInfo(torch.nn.L1Loss,")
    )
    mps = read(pytorch, "torch/testing/_internal/common_mps.py")
    assert (
        '                torch.int16,\n            ],\n            "nn.functional.correlation": None,\n        }'
        in mps
    )
    for rel in (
        "torch/csrc/autograd/FunctionsManual.h",
        "torch/csrc/autograd/FunctionsManual.cpp",
    ):
        text = read(pytorch, rel)
        assert text.index("correlation_double_backward") < text.index(
            "} // namespace torch::autograd"
        )
    docs = read(pytorch, "docs/source/nn.functional.md")
    assert "    affine_grid\n    correlation\n```" in docs
    docs = read(pytorch, "docs/source/nn.md")
    assert "    nn.UpsamplingBilinear2d\n    nn.Correlation\n```" in docs
    assert (
        ".. py:module:: torch.nn.modules.conv\n.. py:module:: torch.nn.modules.correlation\n"
        in docs
    )
    expect = read(pytorch, "test/expect/HasDecompTest.test_has_decomposition.expect")
    assert (
        "aten::_upsample_bilinear2d_aa\naten::correlation_backward\n"
        "aten::correlation_backward.out\naten::cudnn_convolution\n" in expect
    )  # aten.correlation (all overloads) has a decomposition
    test = read(pytorch, "test/nn/test_correlation.py")
    assert "torch_correlation" not in test and "preview only" not in test
    assert 'self.assertTrue(hasattr(torch.ops.aten, "correlation"))' in test


def test_rst_docs(trees, capsys):
    pytorch, sources = trees
    for rel in ("docs/source/nn.functional.md", "docs/source/nn.md"):
        (pytorch / rel).unlink()
    write_tree(
        pytorch,
        {
            "docs/source/nn.functional.rst": """
            torch.nn.functional
            ===================

            Vision functions
            ----------------

            .. autosummary::
                :toctree: generated
                :nosignatures:

                grid_sample
                affine_grid

            DataParallel functions (multi-GPU, distributed)
            -----------------------------------------------
            """,
            "docs/source/nn.rst": """
            Vision Layers
            ----------------------------------
            .. autosummary::
                :toctree: generated
                :nosignatures:
                :template: classtemplate.rst

                nn.PixelShuffle
                nn.UpsamplingBilinear2d

            Shuffle Layers
            ----------------

            .. py:module:: torch.nn.modules.conv
            .. py:module:: torch.nn.modules.distance
            """,
        },
    )
    assert run_main(capsys, pytorch, sources)[0] == 0
    assert "    affine_grid\n    correlation\n\nDataParallel" in read(
        pytorch, "docs/source/nn.functional.rst"
    )
    nn = read(pytorch, "docs/source/nn.rst")
    assert "    nn.UpsamplingBilinear2d\n    nn.Correlation\n\nShuffle Layers" in nn
    assert (
        ".. py:module:: torch.nn.modules.correlation\n.. py:module:: torch.nn.modules.distance"
        in nn
    )


MOVED_ON = [
    (
        "aten/src/ATen/native/native_functions.yaml",
        "- func: grid_sampler_3d_backward(",
        "- func: grid_sampler_3d_bw(",
        "grid_sampler_3d_backward",
    ),
    (
        "tools/autograd/derivatives.yaml",
        "- name: grid_sampler_3d_backward(",
        "- name: gs3d_backward(",
        "grid_sampler_3d_backward",
    ),
    (
        "torch/nn/functional.py",
        "def grid_sample(",
        "def grid_sample_v2(",
        "def grid_sample",
    ),
    ("tools/pyi/gen_pyi.py", '"one_hot": [', '"one_hot_": [', "one_hot"),
    ("tools/pyi/gen_pyi.py", "c_nn_imports = [", "imports = [", "c_nn_imports"),
    (
        "build_variables.bzl",
        '"aten/src/ATen/native/GridSampler.cpp",',
        '"aten/src/ATen/native/GridSampler2.cpp",',
        "aten/src/ATen/native/GridSampler.cpp",
    ),
    (
        "torch/utils/flop_counter.py",
        "def conv_backward_flop(",
        "def conv_bw_flop(",
        "conv_backward_flop",
    ),
    (
        "torch/utils/flop_counter.py",
        "    aten.convolution_backward: conv_backward_flop,\n",
        "",
        "aten.convolution_backward",
    ),
    (
        "torch/testing/_internal/common_modules.py",
        "ModuleInfo(torch.nn.FractionalMaxPool3d,",
        "ModuleInfo(torch.nn.FMP3d,",
        "torch.nn.FractionalMaxPool3d",
    ),
    (
        "torch/testing/_internal/common_mps.py",
        "UNIMPLEMENTED_XFAILLIST: dict",
        "UNIMPLEMENTED: dict",
        "UNIMPLEMENTED_XFAILLIST",
    ),
    (
        "docs/source/amp.md",
        "#### XPU Ops that can autocast to `float16`",
        "#### XPU Ops",
        "XPU Ops that can autocast",
    ),
    (
        "torch/overrides.py",
        "def get_testing_overrides():",
        "def testing_overrides():",
        "get_testing_overrides",
    ),
    (
        "torch/_decomp/decompositions.py",
        "def grid_sampler_2d(",
        "def gs2d(",
        "def grid_sampler_2d",
    ),
    (
        "torch/_decomp/__init__.py",
        "def _core_aten_decompositions_post_autograd",
        "def _core",
        "get_decompositions",
    ),
    (
        "torch/_inductor/decomposition.py",
        "decomps_to_exclude: list",
        "excluded: list",
        "decomps_to_exclude",
    ),
    (
        "torch/_inductor/lowering.py",
        "make_fallback(aten._cdist_backward)",
        "make_fallback(aten._cdist_bw)",
        "make_fallback(aten._cdist_backward)",
    ),
    (
        "torch/_dynamo/trace_rules.py",
        "torch_c_binding_in_graph_functions =",
        "other =",
        "torch_c_binding_in_graph_functions",
    ),
    ("torch/nn/modules/__init__.py", "__all__ = [", "names = [", "__all__"),
    (
        "torch/nn/__init__.py",
        "from torch.nn.modules import *",
        "from torch.nn.modules import Module",
        "torch.nn.modules import *",
    ),
    (
        "torch/testing/_internal/common_methods_invocations.py",
        '"nn.functional.grid_sample"',
        '"nn.functional.grid_sample_v2"',
        "nn.functional.grid_sample",
    ),
    (
        "torch/testing/_internal/common_methods_invocations.py",
        "def sample_inputs_grid_sampler_3d(",
        "def sample_inputs_gs3d(",
        "sample_inputs_grid_sampler_3d",
    ),
    (
        "torch/csrc/autograd/FunctionsManual.cpp",
        "} // namespace torch::autograd::generated::details",
        "}",
        "namespace torch::autograd::generated::details",
    ),
    (
        "aten/src/ATen/autocast_mode.h",
        "  _(conv2d)                              \\\n",
        "",
        "_(conv2d)",
    ),
    (
        "torch/_subclasses/fake_tensor.py",
        "_cpp_meta_supports_symint = ",
        "_symint_ops = ",
        "_cpp_meta_supports_symint",
    ),
    (
        "aten/src/ATen/autocast_mode.cpp",
        "  KERNEL_CPU(conv2d, lower_precision_fp)\n",
        "",
        "KERNEL_CPU(conv2d, lower_precision_fp)",
    ),
    (
        "test/expect/HasDecompTest.test_has_decomposition.expect",
        "aten::",
        "torch::",
        "aten::<op>",
    ),
    (
        "docs/source/nn.functional.md",
        "## Vision functions",
        "## Image functions",
        "Vision functions",
    ),
    (
        "docs/source/nn.md",
        ".. py:module:: torch.nn.modules.conv\n.. py:module:: torch.nn.modules.distance",
        "",
        "py:module:: torch.nn.modules",
    ),
]


@pytest.mark.parametrize(
    "rel,old,new,anchor", MOVED_ON, ids=[f"{m[0]}:{m[3]}" for m in MOVED_ON]
)
def test_moved_on_file_errors_and_writes_nothing(trees, capsys, rel, old, new, anchor):
    pytorch, sources = trees
    path = pytorch / rel
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    before = digest(pytorch)
    code, out, err = run_main(capsys, pytorch, sources)
    assert code == ap.EXIT_ERROR
    first = err.strip().split("\n")[0]
    assert first.startswith(f"apply_patch: error: {rel}: anchor not found:"), err
    assert anchor in first
    assert "Nothing was written." in err
    assert digest(pytorch) == before


def test_missing_target_file(trees, capsys):
    pytorch, sources = trees
    (pytorch / "torch/_dynamo/trace_rules.py").unlink()
    before = digest(pytorch)
    code, _, err = run_main(capsys, pytorch, sources)
    assert code == ap.EXIT_ERROR
    assert "torch/_dynamo/trace_rules.py: anchor not found: the file itself" in err
    assert digest(pytorch) == before


def test_missing_sources_are_listed_together(trees, capsys):
    pytorch, sources = trees
    (sources / "torch_correlation/_flop_counter.py").unlink()
    (sources / "aten_native/cuda/SpatialCorrelation.cu").unlink()
    shutil.rmtree(sources / "aten_functorch")
    before = digest(pytorch)
    code, _, err = run_main(capsys, pytorch, sources)
    assert code == ap.EXIT_ERROR
    for rel in (
        "torch_correlation/_flop_counter.py",
        "aten_native/cuda/SpatialCorrelation.cu",
        "aten_functorch/",
    ):
        assert rel in err
    assert digest(pytorch) == before


def test_outdated_text_is_an_error(trees, capsys):
    pytorch, sources = trees
    assert run_main(capsys, pytorch, sources)[0] == 0
    functional = sources / "torch_correlation/functional.py"
    functional.write_text(
        functional.read_text().replace("Cost volume.", "Cost volume!")
    )
    before = digest(pytorch)
    code, _, err = run_main(capsys, pytorch, sources)
    assert code == ap.EXIT_ERROR
    assert (
        "torch/nn/functional.py: already contains definitions named correlation" in err
    )
    assert "git checkout -- torch/nn/functional.py" in err
    assert digest(pytorch) == before


def test_unknown_name_in_block(trees, capsys):
    pytorch, sources = trees
    functional = sources / "torch_correlation/functional.py"
    functional.write_text(
        functional.read_text().replace(
            "torch._C._nn.correlation,", "_pair(torch._C._nn.correlation),"
        )
    )
    code, _, err = run_main(capsys, pytorch, sources)
    assert code == ap.EXIT_ERROR
    assert (
        "torch/nn/functional.py: correlation uses names that module does not define: _pair"
        in err
    )


def test_preview_use_in_test_is_an_error(trees, capsys):
    pytorch, sources = trees
    test = sources / "test/test_correlation.py"
    test.write_text(test.read_text().replace("  # [preview only]", ""))
    code, _, err = run_main(capsys, pytorch, sources)
    assert code == ap.EXIT_ERROR
    assert (
        "test/test_correlation.py: uses the preview package torch_correlation (line 8)"
        in err
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_emit_patch_applies_with_git(trees, tmp_path, capsys):
    pytorch, sources = trees
    pristine = tmp_path / "pristine"
    shutil.copytree(pytorch, pristine)
    patch = tmp_path / "correlation.patch"
    before = digest(pytorch)
    code, out, err = run_main(capsys, pytorch, sources, "--emit-patch", str(patch))
    assert code == 0, err
    assert digest(pytorch) == before
    text = patch.read_text()
    assert (
        "diff --git a/torch/nn/modules/correlation.py b/torch/nn/modules/correlation.py\nnew file mode 100644\n--- /dev/null\n+++ b/torch/nn/modules/correlation.py\n"
        in text
    )
    assert "--- a/torch/overrides.py\n+++ b/torch/overrides.py\n" in text

    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(tmp_path))
    check = subprocess.run(
        ["git", "apply", "--check", str(patch)],
        cwd=pristine,
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    subprocess.run(["git", "apply", str(patch)], cwd=pristine, env=env, check=True)
    assert run_main(capsys, pytorch, sources)[0] == 0
    assert digest(pristine) == digest(pytorch)


def test_cli_exit_codes(trees):
    pytorch, sources = trees
    cmd = [
        sys.executable,
        str(REPO / "tools/apply_patch.py"),
        str(pytorch),
        "--source-root",
        str(sources),
    ]
    assert subprocess.run(cmd + ["--check"], capture_output=True).returncode == 1
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert subprocess.run(cmd + ["--check"], capture_output=True).returncode == 0
    broken = subprocess.run(cmd[:2] + [str(sources)], capture_output=True, text=True)
    assert (
        broken.returncode == 2
        and "does not look like a PyTorch checkout" in broken.stderr
    )


def test_opinfo_samples_follow_the_contract(monkeypatch):
    """The OpInfo samples of patch/opinfo.py are valid calls under the documented contract."""
    import importlib.util

    import torch

    # OpInfo looks the function up by name; stock torch does not have it.
    monkeypatch.setattr(
        torch.nn.functional, "correlation", lambda *a, **k: None, raising=False
    )
    spec = importlib.util.spec_from_file_location(
        "correlation_opinfo", REPO / "patch/opinfo.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (op,) = module.op_db
    assert op.name == "nn.functional.correlation"

    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    samples = list(module.sample_inputs_correlation(op, "cpu", torch.float64, True))
    assert len(samples) >= 8
    for sample in samples:
        x1, (x2, max_d), kw = sample.input, sample.args, sample.kwargs
        assert x1.dim() in (3, 4) and x1.requires_grad
        offset = kw.get("offset")
        if offset is None:
            assert x1.shape == x2.shape
        else:
            # input2 is sampled in its own size: same rank, batch and channels.
            assert x2.shape[:-2] == x1.shape[:-2] and offset.dim() == x1.dim()
            assert offset.shape[-3] == 2 and not offset.requires_grad
        channels = x1.shape[-3]
        assert channels % kw.get("groups", 1) == 0
        max_d, step = pair(max_d), pair(kw.get("displacement_stride", 1))
        if kw.get("min_displacement") is not None:
            assert all(lo <= hi for lo, hi in zip(pair(kw["min_displacement"]), max_d))
        k, s, p, d = (
            pair(kw.get(n, dflt))
            for n, dflt in (
                ("kernel_size", 1),
                ("stride", 1),
                ("padding", 0),
                ("dilation", 1),
            )
        )
        for axis, size in enumerate(x1.shape[-2:]):
            assert (size + 2 * p[axis] - d[axis] * (k[axis] - 1) - 1) // s[
                axis
            ] + 1 >= 1
            # A negative displacement_stride is valid (descending order).
            assert max_d[axis] >= 0 and step[axis] != 0
        if offset is not None:
            out_size = [
                (size + 2 * p[a] - d[a] * (k[a] - 1) - 1) // s[a] + 1
                for a, size in enumerate(x1.shape[-2:])
            ]
            assert list(offset.shape[-2:]) == out_size
    assert any(
        s.kwargs.get("offset") is not None and s.args[0].shape != s.input.shape
        for s in samples
    )
    assert any(
        s.input.is_contiguous(memory_format=torch.channels_last)
        and s.input.dim() == 4
        and not s.input.is_contiguous()
        for s in samples
    )


@pytest.mark.parametrize(
    "ours", ["aten_native/Correlation.cpp", "aten_native/SpatialCorrelation.cpp"]
)
def test_added_file_never_replaces_a_different_file(trees, capsys, ours):
    """An upstream file of the same name (here Correlation.cpp: torch.cov/corrcoef) is never overwritten."""
    pytorch, sources = trees
    (sources / ours).write_text("// ours\n")
    target = pytorch / "aten/src/ATen/native" / Path(ours).name
    if not target.exists():
        target.write_text("// an unrelated upstream file of the same name\n")
    before = digest(pytorch)
    code, _, err = run_main(capsys, pytorch, sources)
    assert code == ap.EXIT_ERROR
    assert (
        f"aten/src/ATen/native/{Path(ours).name}: exists with different content" in err
    )
    assert "Nothing was written." in err
    assert digest(pytorch) == before


def test_patch_only_adds_lines(trees, capsys, monkeypatch):
    """An edit that drops or rewrites an upstream line stops the run."""
    from correlation_patch import placements

    def rewrite(tree):
        rel = placements.DST_MPS
        tree.stage(
            rel,
            tree.read(rel).replace('"logspace": None', '"logspace": [torch.float16]'),
            "rewrite",
        )

    monkeypatch.setattr(placements, "edit_mps_unsupported", rewrite)
    pytorch, sources = trees
    before = digest(pytorch)
    code, _, err = run_main(capsys, pytorch, sources)
    assert code == ap.EXIT_ERROR
    assert (
        "torch/testing/_internal/common_mps.py: the patch would remove or change upstream lines"
        in err
    )
    assert "'            \"logspace\": None,'" in err
    assert digest(pytorch) == before


@pytest.mark.parametrize(
    "old,new,removed",
    [
        ("a\nb\nc", "a\nx\nb\nc\ny", []),
        ("a\nb\nc", "a\nB\nc", ["b"]),
        ("a\nb", "b\na", ["b"]),
        ("a\n", "a\nb\n", []),
    ],
)
def test_removed_lines(old, new, removed):
    assert model.removed_lines(old, new) == removed


def test_new_file_check_flags_upstream_paths():
    """check_patch's look-up finds upstream's Correlation.cpp (the list and the wheel's libtorch)."""
    import check_patch

    ok, detail = check_patch.step_new_files(
        [
            "aten/src/ATen/native/Correlation.cpp",
            "torch/nn/modules/conv.py",
            "aten/src/ATen/native/SpatialCorrelation.cpp",
        ]
    )
    assert not ok
    assert (
        "BAD aten/src/ATen/native/Correlation.cpp  (exists upstream: listed, compiled/wheel)"
        in detail
    )
    assert (
        "BAD torch/nn/modules/conv.py  (exists upstream: listed, compiled/wheel)"
        in detail
    )
    assert "new aten/src/ATen/native/SpatialCorrelation.cpp" in detail
