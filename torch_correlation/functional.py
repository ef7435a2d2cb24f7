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
    r"""correlation(input1, input2, max_displacement, *, offset=None, min_displacement=None, kernel_size=1, stride=1, padding=0, dilation=1, displacement_stride=1, groups=1, scale=1.0) -> Tensor

    Computes the local correlation (cost volume) of two feature maps.

    This is the correlation layer of optical-flow and stereo networks (FlowNetC,
    PWC-Net, DispNetC, GwcNet, the local lookup of RAFT): for every output
    location and every displacement :math:`(d_y, d_x)` in a window, the dot
    product over channels (and over a small kernel window) of :attr:`input1` at
    that location with :attr:`input2` at the displaced location. With
    :attr:`offset`, the window of every location is moved by that location's
    own fractional displacement (a flow estimate) and :attr:`input2` is
    sampled bilinearly there.

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

    **Flow-guided sampling.** With :attr:`offset`, each output location reads
    :attr:`input2` around its own position: with :math:`(u, v)` =
    ``offset[n, :, o_y, o_x]`` (channel 0 horizontal, channel 1 vertical, in
    pixels of :attr:`input2`; the layout of torchvision's optical flow),

    .. math::
        \text{out}[n, g D + a K_x + b, o_y, o_x] = \text{scale} \sum_{c \in G_g}
        \sum_{i, j}
        \text{input1}[n, c, y_0 + i \delta_h, x_0 + j \delta_w] \cdot
        S\bigl(\text{input2}[n, c],\; y_0 + i \delta_h + d_y^{(a)} + v,\;
        x_0 + j \delta_w + d_x^{(b)} + u\bigr)

    where :math:`S(I, y, x)` interpolates the plane :math:`I` bilinearly in
    pixel coordinates, with every pixel outside :attr:`input2` contributing
    zero: with :math:`y_f = \lfloor y \rfloor`, :math:`x_f = \lfloor x \rfloor`,
    :math:`f_y = y - y_f` and :math:`f_x = x - x_f`,

    .. math::
        S(I, y, x) = (1 - f_y)(1 - f_x) I[y_f, x_f] + (1 - f_y) f_x I[y_f, x_f + 1]
        + f_y (1 - f_x) I[y_f + 1, x_f] + f_y f_x I[y_f + 1, x_f + 1].

    These are exactly the values of
    ``grid_sample(input2, grid, mode="bilinear", padding_mode="zeros",
    align_corners=True)`` at those positions (see the example), computed
    without materializing the sampled copy. The fractional part is the same
    for every displacement and kernel tap of a location, so all of them share
    its four weights. Everything else (the displacement set and its order,
    groups, kernel window, stride, padding, dilation, :attr:`scale`, and the
    output size, which follows :attr:`input1`) is as without an offset, and
    :attr:`input1` still reads zero outside its image. :attr:`input2` may
    then have another height and width than :attr:`input1`, such as a
    coarser level of a pyramid. An integer-valued offset gives exactly the
    integer op's values at the shifted positions: a constant integer
    :math:`(u, v)` equals ``min_displacement=(min_h + v, min_w + u),
    max_displacement=(max_h + v, max_w + u)`` without an offset.

    Shape:
        - input1: :math:`(N, C, H_{in}, W_{in})` or :math:`(C, H_{in}, W_{in})`.
        - input2: the shape, dtype and device of :attr:`input1`. With
          :attr:`offset`: :math:`(N, C, H_2, W_2)` or :math:`(C, H_2, W_2)`,
          the same :math:`N` and :math:`C`, any :math:`H_2, W_2`.
        - offset: :math:`(N, 2, H_{out}, W_{out})` or
          :math:`(2, H_{out}, W_{out})`, the dtype and device of the inputs.
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
    device (every gradient element is summed by one thread; no atomic
    additions).

    Note:
        A NaN or infinite component of :attr:`offset` makes all outputs of its
        location NaN (there is no position to sample; :func:`grid_sample`
        instead reads a NaN coordinate as ``-1``); in the backward, that
        location's offset gradient is NaN and it adds nothing to the gradients
        of :attr:`input1` and :attr:`input2`. Finite offsets that leave
        :attr:`input2`, however far, sample zeros.

    Note:
        Autograd supports reverse and forward mode with respect to
        :attr:`input1`, :attr:`input2` and :attr:`offset`. The offset gradient
        is that of the bilinear weights, which changes where a sampled
        position crosses a pixel; at an exactly integer position it is the
        derivative from the right, as in :func:`grid_sample`. Second
        derivatives with respect to :attr:`input1` and :attr:`input2` work
        with or without an offset. Double backward *through* :attr:`offset`
        (differentiating the offset's gradient, or differentiating the
        gradients of :attr:`input1` and :attr:`input2` with respect to the
        offset) is not implemented and raises a ``RuntimeError``; detach the
        offset (as RAFT detaches its coordinates at every iteration) to
        differentiate twice.

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
    * RAFT's lookup (``CorrBlock`` with radius ``r`` and ``L`` levels) at the
      current estimate ``coords = base + flow`` (``(N, 2, H, W)``, ``(x, y)``
      pixels of level 0, ``base[:, 0, y, x] = x``, ``base[:, 1, y, x] = y``):
      level ``i`` is ``correlation(f1, avg_pool2d(f2, 2**i), r,
      offset=coords / 2**i - base, scale=1 / sqrt(C))``, and the ``L``
      windows concatenated along channels replace the ``(H W)**2`` all-pairs
      volume and its pyramid (pooling ``f2`` by ``2**i`` pools the volume's
      second pixel, since the volume is linear in ``f2``). RAFT flattens
      its window with the horizontal offset outermost:
      ``.view(N, 2r+1, 2r+1, H, W).transpose(1, 2).reshape(N, -1, H, W)``
      gives its channel order (needed only for RAFT's trained weights).
    * PWC-Net without the warp: ``correlation(f1, f2, 4, offset=up_flow,
      scale=1 / C)``, with ``up_flow`` the coarser level's flow, upsampled and
      rescaled to this level's pixels, instead of ``correlation(f1,
      warp(f2, up_flow), 4, scale=1 / C)``. It moves each window by its
      centre's flow, where the warp moves each neighbour by its own, so the
      two agree where the flow is constant over the window (and inside the
      image; PWC-Net's warp also masks partly outside samples); it makes no
      warped copy of ``f2``.

    Args:
        input1 (Tensor): first feature map, :math:`(N, C, H, W)` or :math:`(C, H, W)`.
        input2 (Tensor): second feature map, same shape, dtype and device as
            :attr:`input1`; with :attr:`offset`, any height and width.
        max_displacement (int or tuple): largest displacement ``(dy, dx)``.
        offset (Tensor, optional): per-location displacement ``(u, v)`` of the
            window in :attr:`input2`, :math:`(N, 2, H_{out}, W_{out})`,
            horizontal first, in pixels of :attr:`input2`, fractional values
            sampled bilinearly; ``None`` reads :attr:`input2` at integer
            positions. Default: ``None``
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
        >>> # Flow-guided: a 3 x 3 window around fractional positions in an input2
        >>> # of another size; displacement (dy, dx) = (-1, -1) is channel 0.
        >>> f1 = torch.randn(1, 4, 5, 6, dtype=torch.float64)
        >>> f2 = torch.randn(1, 4, 7, 8, dtype=torch.float64)
        >>> flow = torch.rand(1, 2, 5, 6, dtype=torch.float64) * 4 - 1  # (u, v)
        >>> cost = F.correlation(f1, f2, 1, offset=flow)
        >>> cost.shape
        torch.Size([1, 9, 5, 6])
        >>> ys, xs = torch.meshgrid(torch.arange(5.0), torch.arange(6.0), indexing="ij")
        >>> x, y = xs - 1 + flow[:, 0], ys - 1 + flow[:, 1]  # positions in f2
        >>> grid = torch.stack([2 * x / (8 - 1) - 1, 2 * y / (7 - 1) - 1], -1)
        >>> sampled = F.grid_sample(f2, grid, mode="bilinear", padding_mode="zeros",
        ...                         align_corners=True)
        >>> torch.testing.assert_close(cost[:, 0], (f1 * sampled).sum(1))
    """,
)
# [correlation end]

# doctest.testmod does not collect the docstrings of builtins such as the
# binding; listing it runs the docstring's example (tools/build_docs.sh).
__test__ = {"correlation": correlation.__doc__}
