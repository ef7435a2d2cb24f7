"""``torch.nn.Correlation``.

The class between the ``[module begin]`` and ``[module end]`` markers is the
text of the upstream patch's ``torch/nn/modules/correlation.py`` (exported as
``torch.nn.Correlation``); it only uses names that such a module has
(``Optional``, ``Union``, ``Tensor``, ``F``, ``Module``, ``_pair``). The
preview package installs it as ``torch.nn.Correlation`` when torch lacks it.
"""

import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.module import Module
from torch.nn.modules.utils import _pair

__all__ = ["Correlation"]


# [module begin]
class Correlation(Module):
    r"""Computes the local correlation (cost volume) of two feature maps.

    For every output location and every displacement :math:`(d_y, d_x)` in a
    window, the dot product over the channels of a group (and over a
    ``kernel_size`` window) of ``input1`` at that location with ``input2`` at
    the displaced location; see :func:`torch.nn.functional.correlation` for
    the exact formula. This is the correlation layer of FlowNetC, PWC-Net,
    DispNetC and GwcNet. The module has no parameters.

    ``forward(input1, input2, offset=None)``: with an ``offset`` of shape
    :math:`(N, 2, H_{out}, W_{out})`, ``input2`` is read at every output
    location's window moved by that location's :math:`(u, v)` =
    ``offset[n, :, y, x]`` (horizontal, vertical; in pixels of ``input2``),
    sampled bilinearly with zeros outside ``input2``: RAFT's lookup around
    ``x + flow(x)`` and a PWC-Net level that correlates with the unwarped
    ``input2`` (``offset`` = the upsampled flow). ``input2`` may then have
    another height and width than ``input1``.

    Args:
        max_displacement (int or tuple): largest displacement ``(dy, dx)``.
        min_displacement (int or tuple, optional): smallest displacement;
            ``None`` gives the symmetric range
            :math:`\{k |s| : |k s| \le \text{max\_displacement}\}`. Default: ``None``
        kernel_size (int or tuple): size of the window summed per displacement.
            Default: 1
        stride (int or tuple): stride of the output grid over ``input1``.
            Default: 1
        padding (int or tuple): implicit zero padding of ``input1`` on both
            sides. Default: 0
        dilation (int or tuple): spacing of the kernel window. Default: 1
        displacement_stride (int or tuple): spacing :math:`s` of the
            displacements, nonzero. A negative :math:`s` orders the output
            channels of its axis from the largest displacement down
            (``max_displacement``, ``max_displacement + s``, ... down to at
            least ``min_displacement``), e.g. by disparity for stereo.
            Default: 1
        groups (int): number of channel groups, each giving its own :math:`D`
            output channels; must divide :math:`C`. Default: 1
        scale (float): factor applied to every sum (e.g. ``1 / C``). Default: 1.0

    Shape:
        - Input1, Input2: :math:`(N, C, H_{in}, W_{in})` or :math:`(C, H_{in}, W_{in})`,
          same shape, dtype and device. With an offset, Input2 is
          :math:`(N, C, H_2, W_2)` or :math:`(C, H_2, W_2)`, any
          :math:`H_2, W_2 \ge 1`.
        - Offset (optional): :math:`(N, 2, H_{out}, W_{out})` or
          :math:`(2, H_{out}, W_{out})`, the dtype and device of the inputs.
        - Output: :math:`(N, \text{groups} \cdot D, H_{out}, W_{out})` or
          :math:`(\text{groups} \cdot D, H_{out}, W_{out})`, where :math:`D = K_y K_x`
          is the number of displacements (:math:`K = 2 \lfloor \text{max\_displacement}
          / |s| \rfloor + 1` per axis when ``min_displacement`` is ``None``, else
          :math:`\lfloor (\text{max} - \text{min}) / |s| \rfloor + 1`) and

          .. math::
              H_{out} = \left\lfloor\frac{H_{in} + 2 \times \text{padding}_h -
              \text{dilation}_h \times (\text{kernel\_size}_h - 1) - 1}
              {\text{stride}_h}\right\rfloor + 1

          and likewise :math:`W_{out}`.

    The output has the dtype of the inputs and the memory format of
    ``input1``. Under :func:`torch.autocast` the operator runs in the
    autocast dtype, like :func:`torch.nn.functional.conv2d`: inputs are cast
    to it and the output has it (``torch.autocast("cuda")``: float16,
    ``torch.autocast("cpu")``: bfloat16 by default); sums still accumulate in
    float32.

    Examples::

        >>> corr = nn.Correlation(4, scale=1 / 32)  # PWC-Net's cost volume
        >>> f1 = torch.randn(2, 32, 24, 32)
        >>> f2 = torch.randn(2, 32, 24, 32)
        >>> corr(f1, f2).shape
        torch.Size([2, 81, 24, 32])
        >>> corr
        Correlation(max_displacement=(4, 4), scale=0.03125)
        >>> # GwcNet's volume: 40 groups, disparities 0 .. 47 in that order.
        >>> gwc = nn.Correlation((0, 0), min_displacement=(0, -47),
        ...                      displacement_stride=(1, -1), groups=40, scale=40 / 320)
        >>> gwc
        Correlation(max_displacement=(0, 0), min_displacement=(0, -47), displacement_stride=(1, -1), groups=40, scale=0.125)
        >>> left, right = torch.randn(2, 1, 320, 8, 60).unbind(0)
        >>> gwc(left, right).view(1, 40, 48, 8, 60).shape
        torch.Size([1, 40, 48, 8, 60])
        >>> # A flow-guided 9 x 9 window (RAFT-style lookup) in a coarser input2.
        >>> lookup = nn.Correlation(4, scale=1 / 32)
        >>> coarse = torch.randn(2, 32, 12, 16)
        >>> flow = torch.randn(2, 2, 24, 32)  # (u, v) in pixels of coarse
        >>> lookup(f1, coarse, flow).shape
        torch.Size([2, 81, 24, 32])
    """

    __constants__ = [
        "max_displacement",
        "min_displacement",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "displacement_stride",
        "groups",
        "scale",
    ]
    max_displacement: tuple[int, int]
    min_displacement: tuple[int, int] | None
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    displacement_stride: tuple[int, int]
    groups: int
    scale: float

    def __init__(
        self,
        max_displacement: int | tuple[int, int],
        *,
        min_displacement: int | tuple[int, int] | None = None,
        kernel_size: int | tuple[int, int] = 1,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        displacement_stride: int | tuple[int, int] = 1,
        groups: int = 1,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.max_displacement = _pair(max_displacement)
        self.min_displacement = (
            None if min_displacement is None else _pair(min_displacement)
        )
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.displacement_stride = _pair(displacement_stride)
        self.groups = groups
        self.scale = float(scale)

    def forward(
        self, input1: Tensor, input2: Tensor, offset: Tensor | None = None
    ) -> Tensor:
        return F.correlation(
            input1,
            input2,
            self.max_displacement,
            offset=offset,
            min_displacement=self.min_displacement,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            displacement_stride=self.displacement_stride,
            groups=self.groups,
            scale=self.scale,
        )

    def extra_repr(self) -> str:
        s = "max_displacement={max_displacement}"
        if self.min_displacement is not None:
            s += ", min_displacement={min_displacement}"
        if self.kernel_size != (1, 1):
            s += ", kernel_size={kernel_size}"
        if self.stride != (1, 1):
            s += ", stride={stride}"
        if self.padding != (0, 0):
            s += ", padding={padding}"
        if self.dilation != (1, 1):
            s += ", dilation={dilation}"
        if self.displacement_stride != (1, 1):
            s += ", displacement_stride={displacement_stride}"
        if self.groups != 1:
            s += ", groups={groups}"
        if self.scale != 1.0:
            s += ", scale={scale}"
        return s.format(**self.__dict__)


# [module end]
