"""Meta kernels of ``aten::correlation`` and ``aten::correlation_backward``.

The code between the ``[meta begin]`` and ``[meta end]`` markers is the text
that the upstream patch adds to ``torch/_meta_registrations.py``; it only uses
names that module already has (``torch``, ``utils`` = ``torch._prims_common``,
``aten``, ``register_meta``). A Meta kernel computes the output's shape, dtype,
device and memory format without touching data; FakeTensor (and with it
``torch.compile``, ``torch.export`` and AOTAutograd) runs it in place of the
CPU/CUDA kernels. Sizes may be SymInts (dynamic shapes): the arithmetic below
is the conv2d formula with floor division, and every check goes through
``torch._check`` so that symbolic conditions become guards or runtime asserts.

The checks and messages are those of ``aten/src/ATen/native/SpatialCorrelationUtils.h``
(``correlation_params`` and ``check_correlation_grad_output``), in the same
order, so that fake and real tensors fail alike.

Upstream, ``activate_meta()`` at the end of ``_meta_registrations.py`` installs
every ``register_meta`` entry as the operator's Meta kernel. That ran when
torch was imported, before the preview extension defined our operators, so
:func:`activate` below does the same for these two entries.
"""

import torch
import torch._prims_common as utils
from torch._decomp import meta_table
from torch._meta_registrations import register_meta

aten = torch.ops.aten

__all__ = ["activate"]


# [meta begin]
def _correlation_pair(value, name):
    # An `int[2]` schema argument: the Python binding expands a single int to
    # a pair, but other callers may pass one element, so accept both.
    torch._check(
        len(value) in (1, 2),
        lambda: f"correlation(): expected {name} to be a single int or a pair of ints, "
        f"but got {len(value)} values: {list(value)}",
    )
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def _correlation_check_positive(value, name):
    torch._check(
        value[0] >= 1 and value[1] >= 1,
        lambda: f"correlation(): expected {name} to be positive, but got "
        f"{name}=({value[0]}, {value[1]})",
    )


def _correlation_check_inputs(input1, input2):
    torch._check(
        input1.layout == torch.strided and input2.layout == torch.strided,
        lambda: "correlation(): expected input1 and input2 to have torch.strided layout, "
        f"but input1 has {input1.layout} and input2 has {input2.layout}",
    )
    torch._check(
        input1.dim() in (3, 4),
        lambda: "correlation(): expected input1 to be a 3D (C, H, W) or 4D (N, C, H, W) "
        f"tensor, but got input1 with sizes {list(input1.shape)}",
    )

    def shape_message():
        return (
            "correlation(): expected input1 and input2 to have the same shape, but got "
            f"input1 with sizes {list(input1.shape)} and input2 with sizes "
            f"{list(input2.shape)}"
        )

    torch._check(input1.dim() == input2.dim(), shape_message)
    for size1, size2 in zip(input1.shape, input2.shape):
        torch._check(size1 == size2, shape_message)
    torch._check(
        input1.device == input2.device,
        lambda: "correlation(): expected input1 and input2 to be on the same device, but "
        f"input1 is on {input1.device} and input2 is on {input2.device}",
    )
    torch._check(
        input1.dtype == input2.dtype,
        lambda: "correlation(): expected input1 and input2 to have the same dtype, but "
        f"input1 has {input1.dtype} and input2 has {input2.dtype}",
    )
    torch._check(
        input1.dtype.is_floating_point,
        lambda: "correlation(): expected a floating point dtype (float64, float32, float16 "
        f"or bfloat16), but got {input1.dtype}",
    )


def _correlation_output_shape(
    input1,
    input2,
    max_displacement,
    min_displacement,
    kernel_size,
    stride,
    padding,
    dilation,
    displacement_stride,
    groups,
):
    # Mirrors correlation_params() in SpatialCorrelationUtils.h and returns the
    # output sizes, in input1's batched (N, C, H, W) or unbatched (C, H, W)
    # form. The sizes of the inputs may be symbolic; the arguments are ints.
    _correlation_check_inputs(input1, input2)
    max_disp = _correlation_pair(max_displacement, "max_displacement")
    kernel = _correlation_pair(kernel_size, "kernel_size")
    strides = _correlation_pair(stride, "stride")
    pads = _correlation_pair(padding, "padding")
    dilations = _correlation_pair(dilation, "dilation")
    disp_steps = _correlation_pair(displacement_stride, "displacement_stride")
    _correlation_check_positive(kernel, "kernel_size")
    _correlation_check_positive(strides, "stride")
    _correlation_check_positive(dilations, "dilation")
    _correlation_check_positive(disp_steps, "displacement_stride")
    torch._check(
        pads[0] >= 0 and pads[1] >= 0,
        lambda: "correlation(): expected padding to be non-negative, but got "
        f"padding=({pads[0]}, {pads[1]})",
    )
    torch._check(
        groups >= 1,
        lambda: f"correlation(): expected groups to be positive, but got groups={groups}",
    )

    batched = input1.dim() == 4
    channels, height, width = input1.shape[-3:]
    torch._check(
        channels % groups == 0,
        lambda: f"correlation(): expected the number of channels ({channels}) to be "
        f"divisible by groups ({groups})",
    )

    disp_count = []
    if min_displacement is not None:
        min_disp = _correlation_pair(min_displacement, "min_displacement")
        for axis in range(2):
            torch._check(
                min_disp[axis] <= max_disp[axis],
                lambda: "correlation(): expected min_displacement <= max_displacement, "
                f"but got min_displacement=({min_disp[0]}, {min_disp[1]}) and "
                f"max_displacement=({max_disp[0]}, {max_disp[1]})",
            )
            disp_count.append((max_disp[axis] - min_disp[axis]) // disp_steps[axis] + 1)
    else:
        for axis in range(2):
            torch._check(
                max_disp[axis] >= 0,
                lambda: "correlation(): expected max_displacement to be non-negative when "
                f"min_displacement is None, but got max_displacement=({max_disp[0]}, "
                f"{max_disp[1]})",
            )
            # Symmetric range of multiples of the step: {k * s : |k * s| <= max}.
            disp_count.append(2 * (max_disp[axis] // disp_steps[axis]) + 1)

    # conv2d's output size; Python's floor division matches window_count() for
    # a negative span, and works on SymInts.
    out_h = (height + 2 * pads[0] - dilations[0] * (kernel[0] - 1) - 1) // strides[0] + 1
    out_w = (width + 2 * pads[1] - dilations[1] * (kernel[1] - 1) - 1) // strides[1] + 1

    def empty_output_message():
        return (
            "correlation(): expected a non-empty output, but the input of spatial size "
            f"({height}, {width}) with kernel_size=({kernel[0]}, {kernel[1]}), "
            f"dilation=({dilations[0]}, {dilations[1]}) and padding=({pads[0]}, "
            f"{pads[1]}) gives an output of size ({out_h}, {out_w})"
        )

    torch._check(out_h >= 1, empty_output_message)
    torch._check(out_w >= 1, empty_output_message)
    out_channels = groups * disp_count[0] * disp_count[1]
    if batched:
        return [input1.shape[0], out_channels, out_h, out_w]
    return [out_channels, out_h, out_w]


@register_meta(aten.correlation.default)
def meta_correlation(
    input1,
    input2,
    max_displacement,
    min_displacement=None,
    kernel_size=(1, 1),
    stride=(1, 1),
    padding=(0, 0),
    dilation=(1, 1),
    displacement_stride=(1, 1),
    groups=1,
    scale=1.0,
):
    shape = _correlation_output_shape(
        input1,
        input2,
        max_displacement,
        min_displacement,
        kernel_size,
        stride,
        padding,
        dilation,
        displacement_stride,
        groups,
    )
    # The output follows input1's memory format, like conv2d's.
    return torch.empty(
        shape,
        dtype=input1.dtype,
        device=input1.device,
        memory_format=utils.suggest_memory_format(input1),
    )


@register_meta(aten.correlation_backward.default)
def meta_correlation_backward(
    grad_output,
    input1,
    input2,
    max_displacement,
    min_displacement,
    kernel_size,
    stride,
    padding,
    dilation,
    displacement_stride,
    groups,
    scale,
    output_mask,
):
    shape = _correlation_output_shape(
        input1,
        input2,
        max_displacement,
        min_displacement,
        kernel_size,
        stride,
        padding,
        dilation,
        displacement_stride,
        groups,
    )
    torch._check(
        grad_output.device == input1.device,
        lambda: "correlation_backward(): expected grad_output and input1 to be on the "
        f"same device, but grad_output is on {grad_output.device} and input1 is on "
        f"{input1.device}",
    )
    torch._check(
        grad_output.dtype == input1.dtype,
        lambda: f"correlation_backward(): expected grad_output to have dtype "
        f"{input1.dtype}, but got {grad_output.dtype}",
    )

    # A mismatched grad_output would make the kernels read out of bounds.
    def sizes_message():
        return (
            f"correlation_backward(): expected grad_output to have sizes {shape}, "
            f"but got {list(grad_output.shape)}"
        )

    torch._check_value(grad_output.dim() == len(shape), sizes_message)
    for actual, expected in zip(grad_output.shape, shape):
        torch._check_value(actual == expected, sizes_message)

    # Gradients follow the layout of the tensor they belong to.
    def grad_like(input):
        return torch.empty_like(input, memory_format=utils.suggest_memory_format(input))

    grad_input1 = grad_like(input1) if output_mask[0] else None
    grad_input2 = grad_like(input2) if output_mask[1] else None
    return grad_input1, grad_input2


# [meta end]

_OPERATORS = (aten.correlation.default, aten.correlation_backward.default)
_LIBRARY = None


def activate() -> None:
    """Installs the two Meta kernels into the dispatcher.

    What ``activate_meta()`` does for torch's own entries: the Python kernel
    serves plain meta tensors, ``py_impl`` the Python dispatcher (the
    ``meta_table`` entry made by ``register_meta`` serves FakeTensor).
    """
    global _LIBRARY
    if _LIBRARY is not None:
        return
    _LIBRARY = torch.library.Library("aten", "IMPL", "Meta")
    for op in _OPERATORS:
        fn = meta_table[op]
        op.py_impl(torch._C.DispatchKey.Meta)(fn)
        _LIBRARY.impl(op, fn)
