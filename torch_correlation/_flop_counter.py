"""``torch.utils.flop_counter`` formulas of ``aten::correlation`` and its backward.

The text between the ``[correlation begin]`` and ``[correlation end]``
markers is what the upstream patch inserts into
``torch/utils/flop_counter.py`` after the convolution formulas; it only uses
names that module already has (``register_flop_formula``, ``aten``,
``prod``). Upstream, that module also lists every formula in its literal
``flop_registry`` dict, so the patch adds ``aten.correlation:
correlation_flop`` and ``aten.correlation_backward: correlation_backward_flop``
there too. The preview registers the same functions, through the same
decorator, into the installed torch's registry when this module is imported,
so that ``FlopCounterMode`` counts the operator.
"""

from math import prod

import torch
from torch.utils.flop_counter import register_flop_formula

aten = torch.ops.aten

__all__: list[str] = []


# [correlation begin]
def correlation_flop_count(
    input1_shape, out_shape, kernel_size, groups, sampled=False
) -> int:
    """Count flops for correlation.

    Every output element is the dot product of a (C / groups) x k_h x k_w
    window of input1 with one of input2 (a multiplication and an addition
    each, counted like convolution's), whatever the displacement. With an
    offset (``sampled``), each sample of input2 is the bilinear mix of four
    pixels: the output element mixes the four dot products with those
    pixels, counted as four times the multiply-adds (the weights, one set
    per output location, are not counted).
    """
    # int[2] arguments may hold one value for both axes.
    kernel = [kernel_size] if isinstance(kernel_size, int) else list(kernel_size)
    kernel_h, kernel_w = kernel if len(kernel) == 2 else kernel * 2
    channels_per_group = input1_shape[-3] // groups
    taps = 4 if sampled else 1
    return 2 * taps * prod(out_shape) * channels_per_group * kernel_h * kernel_w


@register_flop_formula(aten.correlation)
def correlation_flop(
    input1_shape,
    input2_shape,
    max_displacement,
    *args,
    offset=None,
    kernel_size=1,
    groups=1,
    out_shape=None,
    **kwargs,
) -> int:
    """Count flops for correlation."""
    return correlation_flop_count(
        input1_shape, out_shape, kernel_size, groups, sampled=offset is not None
    )


@register_flop_formula(aten.correlation_backward)
def correlation_backward_flop(
    grad_out_shape,
    input1_shape,
    input2_shape,
    offset_shape,
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
    out_shape=None,
    **kwargs,
) -> int:
    """Count flops for correlation_backward.

    For a fixed offset correlation is bilinear in the inputs, so each
    requested input gradient is a gather of the same products as the
    forward: the forward's count per gradient. The offset gradient (requested
    only with an offset) moves the bilinear weights: it needs the same four
    dot products per sample as the forward, one more forward's count.
    """
    sampled = offset_shape is not None
    forward = correlation_flop_count(
        input1_shape, grad_out_shape, kernel_size, groups, sampled=sampled
    )
    requested = sum(bool(m) for m in output_mask[:2])
    if sampled and len(output_mask) > 2 and output_mask[2]:
        requested += 1
    return forward * requested


# [correlation end]
