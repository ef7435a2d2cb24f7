"""``torch.nn.functional.correlation``.

The text between the ``[correlation begin]`` and ``[correlation end]``
markers is the exact text that ``tools/apply_patch.py`` inserts into
``torch/nn/functional.py``: like ``conv2d`` and ``gelu`` there, the function
is the generated Python binding ``torch._C._nn.correlation`` (from the
``native_functions.yaml`` schema, which parses the arguments, expands a
single int to an ``int[2]`` pair and dispatches ``__torch_function__``) with
its docstring attached by ``_add_docstr``. It only uses names that module
already has (``torch``, ``_add_docstr``). The preview package installs the
binding into ``torch._C._nn`` before importing this module, so both run the
same source.
"""

import torch
from torch._C import _add_docstr

__all__ = ["correlation"]


# [correlation begin]
correlation = _add_docstr(
    torch._C._nn.correlation,
    r"""correlation(input1, input2, max_displacement, *, min_displacement=None, kernel_size=1, stride=1, padding=0, dilation=1, displacement_stride=1, groups=1, scale=1.0) -> Tensor

    Computes the local correlation (cost volume) of two feature maps.

    This is the correlation layer of optical-flow and stereo networks (FlowNetC,
    PWC-Net, DispNetC, GwcNet, the local lookup of RAFT): for every output
    location and every displacement :math:`(d_y, d_x)` in a window, the dot
    product over channels (and over a small kernel window) of :attr:`input1` at
    that location with :attr:`input2` at the displaced location.

    With :math:`y_0 = o_y \cdot \text{stride}_h - \text{padding}_h` and
    :math:`x_0 = o_x \cdot \text{stride}_w - \text{padding}_w`, the output is

    .. math::
        \text{out}[n, g D + a K_x + b, o_y, o_x] = \text{scale} \sum_{c \in G_g}
        \sum_{i=0}^{k_h - 1} \sum_{j=0}^{k_w - 1}
        \text{input1}[n, c, y_0 + i \delta_h, x_0 + j \delta_w] \cdot
        \text{input2}[n, c, y_0 + i \delta_h + d_y^{(a)}, x_0 + j \delta_w + d_x^{(b)}]

    where :math:`\delta` is :attr:`dilation`, :math:`G_g` the channels
    :math:`[g C / \text{groups}, (g + 1) C / \text{groups})` of group :math:`g`,
    and both inputs read as zero outside the image.

    The displacements along each axis, with :math:`s` =
    :attr:`displacement_stride` (nonzero), are, in output-channel order:

    * if :attr:`min_displacement` is ``None``: the symmetric range
      :math:`\{k |s| : |k s| \le \text{max\_displacement}\}` (always contains
      0), ascending for :math:`s > 0` and descending for :math:`s < 0`;
    * otherwise, for :math:`s > 0`,
      :math:`\text{min}, \text{min} + s, \text{min} + 2s, \dots` up to and
      including at most :attr:`max_displacement` (one-sided ranges, e.g. for
      stereo); for :math:`s < 0`,
      :math:`\text{max}, \text{max} + s, \text{max} + 2s, \dots` down to and
      including at least :attr:`min_displacement`. When
      :math:`\text{max} - \text{min}` is not a multiple of :math:`|s|` the two
      sets differ: ``min_displacement=0, max_displacement=5`` gives
      :math:`0, 2, 4` with :math:`s = 2` and :math:`5, 3, 1` with :math:`s = -2`.

    A negative :attr:`displacement_stride` thus only orders an axis from the
    largest displacement down, at no extra cost: the output is written in that
    order directly, with no flip or copy.

    :math:`K_y` and :math:`K_x` are the numbers of displacements per axis and
    :math:`D = K_y K_x`; output channel :math:`g D + a K_x + b` holds group
    :math:`g`, the :math:`a`-th vertical and the :math:`b`-th horizontal
    displacement in the order above (horizontal fastest).

    Shape:
        - input1, input2: :math:`(N, C, H_{in}, W_{in})` or :math:`(C, H_{in}, W_{in})`,
          same shape, dtype and device.
        - Output: :math:`(N, \text{groups} \cdot D, H_{out}, W_{out})` or
          :math:`(\text{groups} \cdot D, H_{out}, W_{out})`, where

          .. math::
              H_{out} = \left\lfloor\frac{H_{in} + 2 \times \text{padding}_h -
              \text{dilation}_h \times (\text{kernel\_size}_h - 1) - 1}
              {\text{stride}_h}\right\rfloor + 1

          and likewise :math:`W_{out}` (the formula of :func:`conv2d`).

    The output follows the memory format of :attr:`input1` (``channels_last``
    in, ``channels_last`` out). float16 and bfloat16 inputs accumulate in
    float32. Both the forward and the backward are deterministic on every
    device (the backward gathers; it uses no atomic additions).

    Recipes for common models (``C`` is the number of channels):

    * PWC-Net: ``correlation(f1, f2, 4, scale=1 / C)``.
    * FlowNetC: ``correlation(f1, f2, 20, displacement_stride=2, scale=1 / C)``.
    * Caffe's correlation layer (``kernel_size=k, max_displacement=m, pad=p,
      stride_1, stride_2``, requires ``p >= m``): ``correlation(f1, f2, m,
      kernel_size=k, stride=stride_1, padding=p - m, displacement_stride=stride_2,
      scale=1 / (k * k * C))``. flownet2-pytorch's ``Correlation`` (same
      arguments, odd ``k``) centres its kernel window where Caffe's starts, so
      it equals Caffe's only for ``k = 1``; with ``r = (k - 1) // 2`` it is
      ``correlation(f1, f2, m, kernel_size=k, stride=stride_1,
      padding=p - m + r, displacement_stride=stride_2,
      scale=1 / (k * k * C))[..., :H_out, :W_out]`` with
      ``H_out = ceil((H + 2 * p - 2 * m - 2 * r) / stride_1)`` (``W_out``
      likewise), requires ``p + r >= m``. Where its smallest displacement is
      below ``r - m`` (``k > 1``), that layer's reads at the top-left border
      leave its padded copy and see neighbouring memory, not zeros.
    * spatial-correlation-sampler (``kernel_size=k, patch_size=P, stride=s,
      padding=p, dilation=d, dilation_patch=t``) and mmcv's ``Correlation``
      (the same, with ``max_displacement=m`` meaning ``P = 2 * m + 1``):
      ``correlation(f1, f2, (P // 2) * t, min_displacement=-((P - 1) // 2) * t,
      kernel_size=k, stride=s, padding=p, dilation=d,
      displacement_stride=t).view(N, P, P, H_out, W_out)``, no normalization
      (``min_displacement`` matters only for even ``P``). This is the window of
      the sampler's CPU kernel and CUDA backward; for even ``P`` with ``t >= 2``
      its CUDA forward uses another one: ``min_displacement=-((t * (P - 1)) // 2)``,
      ``max_displacement=min_displacement + (P - 1) * t``.
    * GwcNet's group-wise volume (``build_gwc_volume``) with ``D`` disparities
      and ``G`` groups: ``correlation(left, right, (0, 0),
      min_displacement=(0, 1 - D), displacement_stride=(1, -1), groups=G,
      scale=G / C).view(N, G, D, H, W)``. Disparity ``d`` (``left[..., x]``
      against ``right[..., x - d]``, horizontal displacement ``-d``) is at
      index ``d``, as in GwcNet, zero where ``x < d``; no flip is needed.
    * DispNetC's 1-D correlation over ``D`` disparities: the same with one
      group, ``correlation(left, right, (0, 0), min_displacement=(0, 1 - D),
      displacement_stride=(1, -1), scale=1 / C)``; channel ``d`` holds
      disparity ``d``.

    Args:
        input1 (Tensor): first feature map, :math:`(N, C, H, W)` or :math:`(C, H, W)`.
        input2 (Tensor): second feature map, same shape, dtype and device as
            :attr:`input1`.
        max_displacement (int or tuple): largest displacement ``(dy, dx)``.
        min_displacement (int or tuple, optional): smallest displacement; ``None``
            gives the symmetric range. Default: ``None``
        kernel_size (int or tuple): size of the window summed per displacement.
            Default: 1
        stride (int or tuple): stride of the output grid over :attr:`input1`.
            Default: 1
        padding (int or tuple): implicit zero padding of :attr:`input1` on both
            sides. Default: 0
        dilation (int or tuple): spacing of the kernel window. Default: 1
        displacement_stride (int or tuple): spacing of the displacements;
            nonzero, and negative to order them from the largest down.
            Default: 1
        groups (int): number of channel groups, each giving its own ``D``
            output channels; must divide ``C``. Default: 1
        scale (float): factor applied to every sum (e.g. ``1 / C``). Default: 1.0

    Returns:
        Tensor: the cost volume, :math:`(N, \text{groups} \cdot D, H_{out}, W_{out})`.

    Examples::

        >>> f1 = torch.randn(2, 32, 24, 32)
        >>> f2 = torch.roll(f1, shifts=(1, -2), dims=(2, 3))  # f2[y, x] = f1[y - 1, x + 2]
        >>> cost = F.correlation(f1, f2, 4, scale=1 / 32)
        >>> cost.shape
        torch.Size([2, 81, 24, 32])
        >>> best = cost[:, :, 8:16, 8:24].mean((0, 2, 3)).argmax().item()
        >>> divmod(best, 9)  # (dy + 4, dx + 4) of the true motion (1, -2)
        (5, 2)
        >>> # Stereo: a GwcNet volume indexed by disparity d = 0 .. 7.
        >>> left = torch.randn(1, 8, 4, 16)
        >>> right = torch.roll(left, shifts=-3, dims=3)  # right[x - 3] = left[x]
        >>> volume = F.correlation(left, right, (0, 0), min_displacement=(0, -7),
        ...                        displacement_stride=(1, -1), groups=2, scale=2 / 8)
        >>> volume.view(1, 2, 8, 4, 16)[..., 8:13].mean((0, 1, 3, 4)).argmax().item()
        3
    """,
)
# [correlation end]

# doctest.testmod does not collect the docstrings of builtins such as the
# binding; listing it runs the docstring's example (tools/build_docs.sh).
__test__ = {"correlation": correlation.__doc__}
