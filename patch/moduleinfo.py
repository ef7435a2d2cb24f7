"""ModuleInfo for ``nn.Correlation`` in the upstream patch.

``tools/apply_patch.py`` inserts the ``[module_inputs begin]`` /
``[module_inputs end]`` block into
``torch/testing/_internal/common_modules.py`` among the other
``module_inputs_torch_nn_*`` functions, and the ``[moduleinfo begin]`` /
``[moduleinfo end]`` block into its ``module_db`` (after the convolution
modules). Both blocks may only use names that module already has; the
imports below provide the same names here, so the inputs can be generated
and run against the installed torch with the preview package, which must be
imported first (it installs ``torch.nn.Correlation``;
``test/test_correlation_pt2.py`` does).
"""

from functools import partial

import torch
from torch.testing import make_tensor
from torch.testing._internal.common_device_type import skipMPS
from torch.testing._internal.common_methods_invocations import DecorateInfo
from torch.testing._internal.common_modules import (
    FunctionInput,
    ModuleInfo,
    ModuleInput,
    no_batch_dim_reference_fn,
)


# [module_inputs begin]
def module_inputs_torch_nn_Correlation(
    module_info, device, dtype, requires_grad, training, **kwargs
):
    make_input = partial(
        make_tensor, device=device, dtype=dtype, requires_grad=requires_grad
    )
    # Offsets never require grad here: the generic gradgrad test would
    # differentiate through them, which correlation does not implement (RAFT
    # detaches its coordinates too); the OpInfo covers their first-order
    # gradients. Values within a few pixels keep most samples inside input2.
    make_offset = partial(make_tensor, device=device, dtype=dtype, low=-2.5, high=2.5)

    return [
        ModuleInput(
            constructor_input=FunctionInput(1),
            forward_input=FunctionInput(
                make_input((2, 3, 5, 6)), make_input((2, 3, 5, 6))
            ),
            desc="4d_input",
        ),
        ModuleInput(
            constructor_input=FunctionInput(1),
            forward_input=FunctionInput(make_input((3, 5, 6)), make_input((3, 5, 6))),
            reference_fn=no_batch_dim_reference_fn,
            desc="no_batch_dim",
        ),
        ModuleInput(
            constructor_input=FunctionInput(
                (2, 1), kernel_size=3, padding=1, stride=2, groups=2, scale=0.25
            ),
            forward_input=FunctionInput(
                make_input((1, 4, 7, 6)), make_input((1, 4, 7, 6))
            ),
            desc="window_groups",
        ),
        ModuleInput(
            constructor_input=FunctionInput(
                (0, 0), min_displacement=(0, -3), displacement_stride=(1, 2)
            ),
            forward_input=FunctionInput(
                make_input((2, 2, 4, 7)), make_input((2, 2, 4, 7))
            ),
            desc="one_sided",
        ),
        ModuleInput(
            constructor_input=FunctionInput(
                (0, 0), min_displacement=(0, -3), displacement_stride=(1, -1), groups=2
            ),
            forward_input=FunctionInput(
                make_input((2, 4, 4, 7)), make_input((2, 4, 4, 7))
            ),
            desc="descending",
        ),
        ModuleInput(
            constructor_input=FunctionInput(1, scale=0.5),
            forward_input=FunctionInput(
                make_input((2, 3, 5, 6)),
                make_input((2, 3, 4, 8)),
                offset=make_offset((2, 2, 5, 6)),
            ),
            desc="offset",
        ),
        ModuleInput(
            constructor_input=FunctionInput(1),
            forward_input=FunctionInput(
                make_input((3, 5, 6)),
                make_input((3, 7, 4)),
                offset=make_offset((2, 5, 6)),
            ),
            reference_fn=partial(
                no_batch_dim_reference_fn, kwargs_to_batchify={"offset": 0}
            ),
            desc="offset_no_batch_dim",
        ),
        ModuleInput(
            constructor_input=FunctionInput(
                (2, 1), kernel_size=3, padding=1, stride=2, groups=2
            ),
            forward_input=FunctionInput(
                make_input((1, 4, 7, 6)),
                make_input((1, 4, 5, 9)),
                offset=make_offset((1, 2, 4, 3)),
            ),
            desc="offset_window_groups",
        ),
    ]


# [module_inputs end]


module_db = [
    # [moduleinfo begin]
    ModuleInfo(
        torch.nn.Correlation,
        module_inputs_func=module_inputs_torch_nn_Correlation,
        skips=(
            # No MPS kernel.
            DecorateInfo(skipMPS),
        ),
    ),
    # [moduleinfo end]
]
