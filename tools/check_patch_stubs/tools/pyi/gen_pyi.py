# STUB (tools/check_patch_stubs/): the wheel does not ship tools/pyi/gen_pyi.py.
# gen_nn_functional's two tables the patch adds to, trimmed, in upstream's layout.


def defs(name: str, args: list[str], return_type: str) -> str:
    return f"def {name}({', '.join(args)}) -> {return_type}: ..."


def gen_nn_functional(fm) -> None:
    INPUT = "input: Tensor"
    unsorted_c_nn_function_hints: dict[str, list[str]] = {}
    unsorted_c_nn_function_hints.update(
        {
            "one_hot": [
                defs("one_hot", ["tensor: Tensor", "num_classes: int = ..."], "Tensor")
            ],
            "scaled_dot_product_attention": [
                defs("scaled_dot_product_attention", [INPUT], "Tensor")
            ],
        }
    )
    # Functions imported into `torch.nn.functional` from `torch._C._nn`
    c_nn_imports = [
        "avg_pool2d",
        "avg_pool3d",
        "elu_",
        "one_hot",
        "pad",
    ]
