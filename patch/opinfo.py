"""OpInfo for ``nn.functional.correlation`` in the upstream patch.

``tools/apply_patch.py`` inserts the ``[sample_inputs ...]`` block into
``torch/testing/_internal/common_methods_invocations.py`` after
``sample_inputs_grid_sampler_3d``, and the ``[opinfo ...]`` block into its
``op_db`` after the ``nn.functional.grid_sample`` OpInfo. Both blocks may only
use names that module already has; the imports below provide the same names
here, so the samples can be generated against the installed torch
(``test/test_apply_patch.py`` checks them against the output-shape contract).
"""

from functools import partial

import torch
from torch.testing import make_tensor
from torch.testing._internal.common_dtype import floating_types_and
from torch.testing._internal.opinfo.core import OpInfo, SampleInput


# [sample_inputs begin]
def sample_inputs_correlation(op_info, device, dtype, requires_grad, **kwargs):
    make_arg = partial(
        make_tensor,
        device=device,
        dtype=dtype,
        requires_grad=requires_grad,
        low=-1,
        high=1,
    )
    # (shape of both inputs, max_displacement, keyword arguments)
    cases = (
        ((2, 4, 6, 7), 1, {}),
        ((2, 4, 6, 7), (1, 2), {"scale": 0.25}),
        # unbatched input, sparse displacements (FlowNetC style)
        ((4, 5, 6), 2, {"displacement_stride": 2}),
        # one-sided horizontal range (DispNetC style)
        ((1, 4, 7, 6), (0, 0), {"min_displacement": (0, -3)}),
        # the same range in descending order: channel d holds disparity d
        (
            (1, 4, 7, 6),
            (0, 0),
            {"min_displacement": (0, -3), "displacement_stride": (1, -1)},
        ),
        # group-wise volume (GwcNet style)
        ((2, 6, 6, 6), 1, {"groups": 3, "scale": 0.5}),
        # kernel window, padding and output stride (Caffe style)
        ((1, 2, 8, 9), 2, {"kernel_size": 3, "padding": 1, "stride": 2}),
        (
            (1, 2, 9, 8),
            (2, 1),
            {"kernel_size": (3, 1), "dilation": (1, 2), "padding": (2, 0)},
        ),
        ((1, 3, 5, 5), 3, {"min_displacement": -1, "displacement_stride": (1, 2)}),
        # descending from the top, a range that is not a multiple of the step
        ((1, 3, 5, 5), 3, {"min_displacement": -1, "displacement_stride": (-2, -3)}),
    )
    for shape, max_displacement, op_kwargs in cases:
        yield SampleInput(
            make_arg(shape), make_arg(shape), max_displacement, **op_kwargs
        )
    # channels_last inputs: the output follows input1's memory format
    shape = (2, 3, 5, 6)
    yield SampleInput(
        make_arg(shape, memory_format=torch.channels_last),
        make_arg(shape, memory_format=torch.channels_last),
        1,
    )

    # Bilinearly sampled input2 (offset=), which may have its own height and
    # width. Each offset component is an integer in [-3, 2] plus a fraction
    # in [0.2, 0.8]: the samples are smooth in the offset there (bilinear
    # interpolation has kinks at integer positions), and some taps fall
    # outside input2. The offset is a keyword argument, which gradcheck and
    # gradgradcheck hold constant, so it does not require grad (double
    # backward through the offset is not implemented).
    def make_offset(shape, **kwargs):
        whole = make_tensor(shape, device=device, dtype=dtype, low=-3, high=3)
        fraction = make_tensor(shape, device=device, dtype=dtype, low=0.2, high=0.8)
        return (whole.floor() + fraction).contiguous(**kwargs)

    # (shape of input1, shape of input2, max_displacement, offset shape,
    # keyword arguments)
    offset_cases = (
        ((2, 4, 6, 7), (2, 4, 5, 9), 1, (2, 2, 6, 7), {}),
        # unbatched, grouped, kernel window (RAFT-like lookup of a coarser level)
        (
            (4, 5, 6),
            (4, 3, 4),
            (1, 2),
            (2, 5, 6),
            {"kernel_size": 3, "padding": 1, "groups": 2},
        ),
        # descending horizontal order, output stride and dilation
        (
            (1, 3, 7, 6),
            (1, 3, 8, 5),
            (0, 0),
            (1, 2, 4, 3),
            {
                "min_displacement": (0, -2),
                "displacement_stride": (1, -1),
                "kernel_size": (1, 2),
                "stride": 2,
                "dilation": (1, 2),
                "padding": (0, 1),
                "scale": 0.5,
            },
        ),
    )
    for shape1, shape2, max_displacement, offset_shape, op_kwargs in offset_cases:
        yield SampleInput(
            make_arg(shape1),
            make_arg(shape2),
            max_displacement,
            offset=make_offset(offset_shape),
            **op_kwargs,
        )
    # channels_last inputs and offset
    yield SampleInput(
        make_arg((2, 3, 5, 6), memory_format=torch.channels_last),
        make_arg((2, 3, 6, 4), memory_format=torch.channels_last),
        1,
        offset=make_offset((2, 2, 5, 6), memory_format=torch.channels_last),
    )


# [sample_inputs end]


op_db = [
    # [opinfo begin]
    OpInfo(
        "nn.functional.correlation",
        aten_name="correlation",
        aten_backward_name="correlation_backward",
        dtypes=floating_types_and(torch.float16, torch.bfloat16),
        sample_inputs_func=sample_inputs_correlation,
        supports_out=False,
        supports_forward_ad=True,
        supports_fwgrad_bwgrad=True,
    ),
    # [opinfo end]
]
