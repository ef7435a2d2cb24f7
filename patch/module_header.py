# ruff: noqa: F401, F822
"""Header of ``torch/nn/modules/correlation.py`` in the upstream patch.

``tools/apply_patch.py`` writes the lines between the ``[header begin]`` and
``[header end]`` markers, then the ``Correlation`` class taken from
``torch_correlation/modules.py`` (between its ``[module begin]`` and
``[module end]`` markers). Imports the class does not use are dropped, so the
list below may offer more than one class needs; ``typing`` names the class
uses are added automatically. Any other name the class needs must be imported
here.
"""

# [header begin]
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.common_types import _size_2_t

from .module import Module
from .utils import _pair


__all__ = ["Correlation"]
# [header end]
