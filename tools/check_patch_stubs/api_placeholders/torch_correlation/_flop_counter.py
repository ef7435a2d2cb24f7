# PLACEHOLDER (tools/check_patch_stubs/api_placeholders/): stands in for
# torch_correlation/_flop_counter.py until that file exists.
from torch.utils.flop_counter import register_flop_formula
import torch

aten = torch.ops.aten

# [correlation begin]
@register_flop_formula(aten.correlation)
def correlation_flop(input1_shape, input2_shape, *args, out_shape=None, **kwargs) -> int:
    """Placeholder: two flops per output element and input channel."""
    return 2 * torch.Size(out_shape).numel() * input1_shape[-3]


@register_flop_formula(aten.correlation_backward)
def correlation_backward_flop(grad_out_shape, input1_shape, *args, out_shape=None, **kwargs) -> int:
    """Placeholder: twice the forward."""
    return 4 * torch.Size(grad_out_shape).numel() * input1_shape[-3]
# [correlation end]
