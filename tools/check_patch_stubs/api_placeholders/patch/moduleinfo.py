# PLACEHOLDER (tools/check_patch_stubs/api_placeholders/): stands in for
# patch/moduleinfo.py until that file exists.
from functools import partial

import torch
from torch.testing import make_tensor
from torch.testing._internal.common_modules import FunctionInput, ModuleInfo, ModuleInput


# [module_inputs begin]
def module_inputs_torch_nn_Correlation(module_info, device, dtype, requires_grad, training, **kwargs):
    make_input = partial(make_tensor, device=device, dtype=dtype, requires_grad=requires_grad)
    return [
        ModuleInput(
            constructor_input=FunctionInput(1),
            forward_input=FunctionInput(make_input((2, 3, 5, 6)), make_input((2, 3, 5, 6))),
        )
    ]
# [module_inputs end]

module_db = [
    # [moduleinfo begin]
    ModuleInfo(torch.nn.Correlation,
               module_inputs_func=module_inputs_torch_nn_Correlation,
               ),
    # [moduleinfo end]
]
