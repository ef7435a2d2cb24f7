"""Where the patch goes: tables of (target file, anchor, block) for each edit
kind of ``pyedit`` and ``textedit``, and functions for the edits computed from
the sources (build lists, the schema's override and type hint, flop registry
entries, decomposition lists, the HasDecomp expect file).

``plan()`` computes every edit in memory; it raises ``PatchError`` (naming
the file and the anchor) before anything is written.
"""

from __future__ import annotations

import ast
import re

from .model import AnchorError, PatchError, Tree, check_additive, copy_file, outdated
from .pyedit import (
    TYPING_NAMES,
    add_typing_names,
    assigned_value,
    compile_check,
    edit_python_block,
    free_names,
    insert_after_element,
    insert_dict_entries,
    insert_list_expr,
    insert_sorted_string,
    insert_string_after,
    module_bindings,
    parse_python,
    top_level_def,
)
from .sources import (
    FUNCTION,
    FUNCTORCH_DST,
    MODULE_CLASS,
    NATIVE_DST,
    SRC_DECOMP,
    SRC_FLOP,
    SRC_MODULE_HEADER,
    SRC_MODULES,
    TEST_FILES,
    load_sources,
    pyi_type,
    upstream_test,
)
from .textedit import (
    add_autosummary_item,
    add_line_in_block,
    add_macro_entry,
    add_markdown_list_item,
    add_py_module,
    docs_file,
    edit_cpp_block_before,
    edit_yaml,
)
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

DST_NATIVE_YAML = "aten/src/ATen/native/native_functions.yaml"
DST_DERIVATIVES_YAML = "tools/autograd/derivatives.yaml"
DST_BUILD_VARIABLES = "build_variables.bzl"
DST_FUNCTIONAL = "torch/nn/functional.py"
DST_GEN_PYI = "tools/pyi/gen_pyi.py"
DST_MODULE = "torch/nn/modules/correlation.py"
DST_MODULES_INIT = "torch/nn/modules/__init__.py"
DST_NN_INIT = "torch/nn/__init__.py"
DST_OVERRIDES = "torch/overrides.py"
DST_DECOMP = "torch/_decomp/decompositions.py"
DST_TRACE_RULES = "torch/_dynamo/trace_rules.py"
DST_DECOMP_INIT = "torch/_decomp/__init__.py"
DST_INDUCTOR_DECOMP = "torch/_inductor/decomposition.py"
DST_INDUCTOR_LOWERING = "torch/_inductor/lowering.py"
DST_FLOP_COUNTER = "torch/utils/flop_counter.py"
DST_FAKE_TENSOR = "torch/_subclasses/fake_tensor.py"
DST_OPINFO = "torch/testing/_internal/common_methods_invocations.py"
DST_MODULEINFO = "torch/testing/_internal/common_modules.py"
DST_MPS = "torch/testing/_internal/common_mps.py"
DST_MANUAL_H = "torch/csrc/autograd/FunctionsManual.h"
DST_MANUAL_CPP = "torch/csrc/autograd/FunctionsManual.cpp"
DST_AUTOCAST = "aten/src/ATen/autocast_mode.h"
DST_AUTOCAST_CPP = "aten/src/ATen/autocast_mode.cpp"
DST_AMP_DOCS = "docs/source/amp.md"
DST_DOCS_FUNCTIONAL = "docs/source/nn.functional"  # .md (current) or .rst (older)
DST_DOCS_NN = "docs/source/nn"
DST_HAS_DECOMP_EXPECT = "test/expect/HasDecompTest.test_has_decomposition.expect"

MANUAL_NAMESPACE_END = re.compile(
    r"^\}\s*//\s*namespace\s+torch::autograd::generated::details\s*$"
)

# Build lists of build_variables.bzl (Buck/Bazel; CMake globs the directories):
# (where our file lives, the list, the upstream entry ours follows). Headers,
# .cu files and aten/src/ATen/functorch/*.cpp are not listed upstream.
BUILD_LISTS = (
    (
        "cpu/",
        ".cpp",
        "aten_native_source_codegen_list",
        "aten/src/ATen/native/cpu/GridSamplerKernel.cpp",
    ),
    (
        "cuda/",
        ".cpp",
        "aten_cuda_cu_source_list",
        "aten/src/ATen/native/cuda/GridSampler.cpp",
    ),
    (
        "",
        ".cpp",
        "aten_native_source_non_codegen_list",
        "aten/src/ATen/native/GridSampler.cpp",
    ),
)


def edit_build_variables(tree: Tree, native_files: list[str]) -> None:
    # Each file goes right after the list's anchor, so inserting in reverse
    # order leaves ours in sorted order after it.
    for rel in sorted(native_files, reverse=True):
        for folder, ext, variable, anchor in BUILD_LISTS:
            if rel.endswith(ext) and (
                rel.startswith(folder) if folder else "/" not in rel
            ):
                insert_string_after(
                    tree, DST_BUILD_VARIABLES, variable, f"{NATIVE_DST}/{rel}", anchor
                )
                break


# Blocks inserted after a top-level def: (target, source block, what it is, the def).
PYTHON_BLOCKS = (
    (DST_FUNCTIONAL, "functional", FUNCTION, "grid_sample"),
    (DST_DECOMP, "decomp", "the decomposition", "grid_sampler_2d"),
    (DST_FLOP_COUNTER, "flop", "the flop formulas", "conv_backward_flop"),
    (
        DST_OPINFO,
        "opinfo_samples",
        "sample_inputs_correlation",
        "sample_inputs_grid_sampler_3d",
    ),
    (
        DST_MODULEINFO,
        "moduleinfo_inputs",
        f"module_inputs_torch_nn_{MODULE_CLASS}",
        "module_inputs_torch_nn_FractionalMaxPool3d",
    ),
)
# Elements inserted after an element ``Info(<name>, ...)`` of a list literal:
# (target, list, source block, the anchor's name, ours).
LIST_ELEMENTS = (
    (
        DST_OPINFO,
        "op_db",
        "opinfo_entry",
        "nn.functional.grid_sample",
        f"nn.functional.{FUNCTION}",
    ),
    (
        DST_MODULEINFO,
        "module_db",
        "moduleinfo_entry",
        "torch.nn.FractionalMaxPool3d",
        f"torch.nn.{MODULE_CLASS}",
    ),
)
# Strings inserted in sorted place among the list's strings starting with the prefix.
SORTED_STRINGS = (
    (
        DST_TRACE_RULES,
        "torch_c_binding_in_graph_functions",
        f"torch._C._nn.{FUNCTION}",
        "torch._C._nn.",
    ),
    (DST_GEN_PYI, "c_nn_imports", FUNCTION, ""),
    (DST_MODULES_INIT, "__all__", MODULE_CLASS, ""),
)
# lower_precision_fp next to conv2d. The macro expands for CUDA and the other
# device types that use it (amp.md lists CUDA and XPU); the AutocastCPU kernels
# of autocast_mode.cpp are an explicit list, so CPU gets its own line there.
MACRO_ENTRIES = (
    (DST_AUTOCAST, "AT_FORALL_LOWER_PRECISION_FP", "_(conv2d)", f"_({FUNCTION})"),
)
BLOCK_LINES = (
    (
        DST_AUTOCAST_CPP,
        "TORCH_LIBRARY_IMPL(aten, AutocastCPU, m) {",
        "KERNEL_CPU(conv2d, lower_precision_fp)",
        f"KERNEL_CPU({FUNCTION}, lower_precision_fp)",
    ),
)
MARKDOWN_ITEMS = tuple(
    (
        DST_AMP_DOCS,
        f"{device} Ops that can autocast to `{dtype}`",
        "`conv2d`,",
        f"`{FUNCTION}`,",
    )
    for device, dtype in (("CUDA", "float16"), ("XPU", "float16"), ("CPU", "bfloat16"))
)
# YAML entries after the grid_sampler family: (target, key, source entries).
YAML_ENTRIES = (
    (DST_NATIVE_YAML, "func", "native_yaml"),
    (DST_DERIVATIVES_YAML, "name", "derivatives_yaml"),
)
YAML_ANCHOR = "grid_sampler_3d_backward"
# C++ blocks at the end of the autograd helpers' namespace.
CPP_BLOCKS = ((DST_MANUAL_H, "manual_h"), (DST_MANUAL_CPP, "manual_cpp"))
# Autosummary entries: (docs file without extension, section, item).
DOC_ITEMS = (
    (DST_DOCS_FUNCTIONAL, "Vision functions", FUNCTION),
    (DST_DOCS_NN, "Vision Layers", f"nn.{MODULE_CLASS}"),
)


def schema_parameters(schema, annotate: bool) -> list[str]:
    out = []
    for name, type_, default in schema:
        if name == "*":
            out.append("*")
            continue
        text = f"{name}: {pyi_type(type_)}" if annotate else name
        if default is not None:
            text += f" = {default}" if annotate else f"={default}"
        out.append(text)
    return out


def edit_gen_pyi(tree: Tree, schema) -> None:
    """Type hints of the ``torch._C._nn`` binding, as gen_pyi writes them for
    the other ``_add_docstr``-ed ``torch._C._nn`` functions (e.g. ``one_hot``)."""
    rel = DST_GEN_PYI
    module = parse_python(tree.read(rel), rel)
    if top_level_def(module, "defs") is None:
        raise AnchorError(rel, "'def defs(...)' (the hint helper)")
    dicts = [
        n
        for n in ast.walk(module)
        if isinstance(n, ast.Dict)
        and any(isinstance(k, ast.Constant) and k.value == "one_hot" for k in n.keys)
    ]
    params = "".join(
        f'{" " * 24}"{p}",\n' for p in schema_parameters(schema, annotate=True)
    )
    indent = " " * 12
    value = (
        f'[\n{indent}    defs(\n{indent}        "{FUNCTION}",\n{indent}        [\n{params}'
        f'{indent}        ],\n{indent}        "Tensor",\n{indent}    )\n{indent}]'
    )
    insert_dict_entries(
        tree,
        rel,
        dicts[0] if dicts else None,
        "'one_hot'",
        "the dict of c_nn function hints holding 'one_hot'",
        [(f'"{FUNCTION}"', value)],
    )


def edit_overrides(tree: Tree, schema) -> None:
    rel = DST_OVERRIDES
    text = tree.read(rel)
    getter = top_level_def(parse_python(text, rel), "get_testing_overrides")
    if getter is None:
        raise AnchorError(rel, "'def get_testing_overrides()'")
    lines = text.split("\n")
    key = re.compile(r"^(\s+)torch\.nn\.functional\.(\w+):")
    keys = [
        (i, m.group(1), m.group(2))
        for i in range(getter.lineno - 1, getter.end_lineno)
        if (m := key.match(lines[i]))
    ]
    if not keys:
        raise AnchorError(
            rel, "'torch.nn.functional.*' entries in get_testing_overrides()"
        )
    indent = keys[0][1]
    lam = "lambda " + ", ".join(schema_parameters(schema, annotate=False)) + ": -1"
    entry = f"{indent}torch.nn.functional.{FUNCTION}: (\n{indent}    {lam}\n{indent}),"
    if entry in text:
        tree.present(rel)
        return
    if any(name == FUNCTION for _, _, name in keys):
        raise outdated(rel, f"an entry for torch.nn.functional.{FUNCTION}")
    later = [i for i, _, name in keys if name > FUNCTION]
    if not later:
        raise AnchorError(
            rel, f"a 'torch.nn.functional.<name>' entry that sorts after '{FUNCTION}'"
        )
    lines[later[0] : later[0]] = entry.split("\n")
    tree.stage(
        rel,
        "\n".join(lines),
        f"add torch.nn.functional.{FUNCTION} to get_testing_overrides",
    )


def module_file(header: str, class_block: str) -> str:
    """``torch/nn/modules/correlation.py``: the header (unused imports dropped) and the class."""
    class_tree = parse_python(class_block, f"{SRC_MODULES} (module block)")
    if top_level_def(class_tree, MODULE_CLASS) is None:
        raise PatchError(
            f"{SRC_MODULES}: the module block does not define 'class {MODULE_CLASS}'"
        )
    used = free_names(class_tree)
    header_tree = parse_python(header, SRC_MODULE_HEADER)
    lines = header.split("\n")
    for node in reversed(header_tree.body):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        keep = [a for a in node.names if (a.asname or a.name.split(".")[0]) in used]
        if len(keep) == len(node.names):
            continue
        if keep:
            node.names = keep
            lines[node.lineno - 1 : node.end_lineno] = [ast.unparse(node)]
        else:
            del lines[node.lineno - 1 : node.end_lineno]
    header = "\n".join(_tidy_blank_lines(lines))
    text = header + "\n\n\n" + class_block + "\n"
    available, _ = module_bindings(parse_python(text, DST_MODULE))
    missing = used - available
    typing_missing = missing & TYPING_NAMES
    if missing - typing_missing:
        raise PatchError(
            f"{SRC_MODULES}: the module block uses names that {SRC_MODULE_HEADER} does not "
            "import: "
            + ", ".join(sorted(missing - typing_missing))
            + ". Nothing was written."
        )
    return add_typing_names(text, DST_MODULE, typing_missing)


def _tidy_blank_lines(lines: list[str]) -> list[str]:
    """Drop leading blank lines, and extra blank lines left before imports."""
    out: list[str] = []
    for line in lines:
        if not line.strip() and not out:
            continue
        if line.startswith(("import ", "from ")):
            while len(out) >= 2 and not out[-1].strip() and not out[-2].strip():
                out.pop()
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return out


def edit_modules_init(tree: Tree) -> None:
    rel = DST_MODULES_INIT
    text = tree.read(rel)
    module = parse_python(text, rel)
    lines = text.split("\n")
    relative = [
        n for n in module.body if isinstance(n, ast.ImportFrom) and n.level == 1
    ]
    if not any(n.module == FUNCTION for n in relative):
        sortable = [n for n in relative if "usort: skip" not in lines[n.lineno - 1]]
        if not sortable:
            raise AnchorError(rel, "'from .<module> import ...' statements")
        later = [n for n in sortable if (n.module or "") > FUNCTION]
        index = later[0].lineno - 1 if later else sortable[-1].end_lineno
        lines.insert(index, f"from .{FUNCTION} import {MODULE_CLASS}")
        tree.stage(rel, "\n".join(lines), f"import {MODULE_CLASS}")
    else:
        tree.present(rel)


def check_nn_init(tree: Tree) -> None:
    """``torch.nn`` re-exports ``torch.nn.modules`` with a ``*`` import; nothing to add."""
    rel = DST_NN_INIT
    text = tree.read(rel)
    if not re.search(
        r"^from (torch\.nn\.modules|\.modules) import \*", text, re.MULTILINE
    ):
        raise AnchorError(
            rel, "'from torch.nn.modules import *' (which exports nn.Correlation)"
        )
    tree.present(
        rel, "no change needed: 'from torch.nn.modules import *' exports nn.Correlation"
    )


def _call_named(first_arg: str):
    """Picks ``Info("name", ...)`` / ``Info(torch.nn.Name, ...)`` elements."""

    def pick(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Call)
            and bool(node.args)
            and (ast.unparse(node.args[0]).strip("'\"") == first_arg)
        )

    return pick


def edit_mps_unsupported(tree: Tree) -> None:
    """The OpInfo fails on MPS (no kernel): listed as not expected to work there."""
    rel = DST_MPS
    node = assigned_value(parse_python(tree.read(rel), rel), "UNIMPLEMENTED_XFAILLIST")
    if not isinstance(node, ast.Dict) or not node.keys or node.keys[-1] is None:
        raise AnchorError(rel, "the dict literal UNIMPLEMENTED_XFAILLIST")
    insert_dict_entries(
        tree,
        rel,
        node,
        ast.unparse(node.keys[-1]),
        "UNIMPLEMENTED_XFAILLIST",
        [(f'"nn.functional.{FUNCTION}"', "None")],
    )


def edit_flop_registry(tree: Tree, block: str) -> None:
    """``flop_registry`` is rebound to a dict literal after the decorated
    formulas, so each of ours is listed there too."""
    entries = []
    for node in parse_python(block, SRC_FLOP).body:
        for decorator in getattr(node, "decorator_list", []):
            if (
                isinstance(decorator, ast.Call)
                and ast.unparse(decorator.func) == "register_flop_formula"
            ):
                target = decorator.args[0]
                items = (
                    target.elts
                    if isinstance(target, (ast.List, ast.Tuple))
                    else [target]
                )
                entries += [(ast.unparse(item), node.name) for item in items]
    if not entries:
        raise PatchError(
            f"{SRC_FLOP}: the block has no @register_flop_formula(...) function"
        )
    rel = DST_FLOP_COUNTER
    insert_dict_entries(
        tree,
        rel,
        assigned_value(parse_python(tree.read(rel), rel), "flop_registry"),
        "aten.convolution_backward",
        "the flop_registry dict",
        entries,
    )


def edit_decomp_lists(tree: Tree) -> None:
    """Core ATen decomposes correlation; Inductor keeps the native kernel."""
    rel = DST_DECOMP_INIT
    module = parse_python(tree.read(rel), rel)
    getter = top_level_def(module, "_core_aten_decompositions_post_autograd")
    calls = [
        n
        for n in ast.walk(getter or ast.Module(body=[], type_ignores=[]))
        if isinstance(n, ast.Call)
        and ast.unparse(n.func) == "get_decompositions"
        and n.args
    ]
    found = (
        calls[-1].args[0] if calls and isinstance(calls[-1].args[0], ast.List) else None
    )
    insert_list_expr(
        tree,
        rel,
        found,
        "the get_decompositions([...]) list of _core_aten_decompositions_post_autograd()",
        f"aten.{FUNCTION}",
        keep_sorted=True,
    )
    rel = DST_INDUCTOR_DECOMP
    found = assigned_value(parse_python(tree.read(rel), rel), "decomps_to_exclude")
    insert_list_expr(
        tree,
        rel,
        found,
        "the decomps_to_exclude list",
        f"aten.{FUNCTION}",
        keep_sorted=False,
        comment="inductor calls the native kernel",
    )


# FakeTensor with symbolic sizes prefers an operator's Python decomposition
# (which checks nothing) over its C++ Meta kernel unless the operator is listed
# here; ours is written over SymInt and runs the checks of the real kernels.
FAKE_TENSOR_SYMINT_META = (f"aten.{FUNCTION}.default", f"aten.{FUNCTION}.out")


def _symint_meta_set(tree: Tree, rel: str) -> ast.List | None:
    """The elements of ``_cpp_meta_supports_symint = ordered_set(...)``, as a list node."""
    for node in ast.walk(parse_python(tree.read(rel), rel)):
        if (
            isinstance(node, ast.Assign)
            and any(
                isinstance(t, ast.Name) and t.id == "_cpp_meta_supports_symint"
                for t in node.targets
            )
            and isinstance(node.value, ast.Call)
        ):
            return ast.List(elts=node.value.args)
    return None


def edit_fake_tensor_symint_meta(tree: Tree) -> None:
    rel = DST_FAKE_TENSOR
    what = "the ordered_set(...) assigned to FakeTensorMode._cpp_meta_supports_symint"
    for expr in FAKE_TENSOR_SYMINT_META:
        # Parsed again for each entry: an insertion moves the lines after it.
        insert_list_expr(
            tree, rel, _symint_meta_set(tree, rel), what, expr, keep_sorted=False
        )


# Inductor's fallbacks for our operators. correlation has a core ATen
# decomposition that Inductor excludes (edit_decomp_lists), so its fallback
# must say warn=False: an implicit one asserts under CI=1 ("a decomposition
# exists"). No layout constraint: the kernels read any strides, so Inductor
# need not copy channels_last or strided inputs (its implicit backward
# fallbacks would force contiguous ones).
INDUCTOR_FALLBACKS = (
    f"make_fallback(aten.{FUNCTION}, warn=False)",
    f"make_fallback(aten.{FUNCTION}_backward)",
)
INDUCTOR_FALLBACK_COMMENT = (
    "# correlation: the native kernels (any strides) rather than the core ATen\n"
    "# decomposition, which stays for export and ONNX."
)


def edit_inductor_fallbacks(tree: Tree) -> None:
    rel = DST_INDUCTOR_LOWERING
    text = tree.read(rel)
    lines = text.split("\n")
    if all(line in lines for line in INDUCTOR_FALLBACKS):
        tree.present(rel)
        return
    if any(
        re.match(rf"make_fallback\(aten\.{FUNCTION}(_backward)?\b", line)
        for line in lines
    ):
        raise outdated(rel, f"the make_fallback(aten.{FUNCTION}...) lines")
    anchor = "make_fallback(aten._cdist_backward)"
    hits = [i for i, line in enumerate(lines) if line.strip() == anchor]
    if not hits:
        raise AnchorError(rel, f"the top-level '{anchor}' line")
    lines[hits[0] + 1 : hits[0] + 1] = [
        *INDUCTOR_FALLBACK_COMMENT.split("\n"),
        *INDUCTOR_FALLBACKS,
    ]
    tree.stage(
        rel, "\n".join(lines), "add the correlation fallbacks after the _cdist ones"
    )


def edit_has_decomp_expect(
    tree: Tree, native: tuple[str, list[str]], decomp: str
) -> None:
    """List our overloads without a decomposition in HasDecompTest's expect file."""
    body, names = native
    overloads = list(names)
    for match in re.finditer(r"^\s+autogen:\s*(.+)$", body, re.MULTILINE):
        overloads += [
            name.strip() for name in match.group(1).split(",") if name.strip()
        ]
    decomposed: set[str] = set()
    for node in ast.walk(parse_python(decomp, SRC_DECOMP)):
        if (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) == "register_decomposition"
        ):
            for arg in node.args:
                items = arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]
                for item in items:
                    parts = ast.unparse(item).split(".")
                    if parts[0] == "aten" and len(parts) >= 2:
                        op = parts[1] if len(parts) == 2 else f"{parts[1]}.{parts[2]}"
                        decomposed.add(op.replace(".default", ""))
    wanted = [
        f"aten::{op}"
        for op in overloads
        if op not in decomposed and op.split(".")[0] not in decomposed
    ]
    rel = DST_HAS_DECOMP_EXPECT
    text = tree.read(rel)
    lines = text.split("\n")
    existing = [i for i, line in enumerate(lines) if line.startswith("aten::")]
    if not existing:
        raise AnchorError(rel, "the sorted 'aten::<op>' list")
    added = []
    for name in sorted(wanted):
        if name in lines:
            continue
        later = [
            i
            for i, line in enumerate(lines)
            if line.startswith("aten::") and line > name
        ]
        index = (
            later[0]
            if later
            else max(i for i, line in enumerate(lines) if line.startswith("aten::")) + 1
        )
        lines.insert(index, name)
        added.append(name)
    if added:
        tree.stage(
            rel, "\n".join(lines), "list " + ", ".join(added) + " (no decomposition)"
        )
    else:
        tree.present(rel)


def plan(pytorch_root: Path, source_root: Path) -> Tree:
    """Compute every edit in memory; raises PatchError before anything is written."""
    if not (pytorch_root / DST_NATIVE_YAML).is_file():
        raise PatchError(
            f"{pytorch_root} does not look like a PyTorch checkout "
            f"({DST_NATIVE_YAML} not found). Nothing was written."
        )
    src = load_sources(source_root)
    if (
        FUNCTION
        not in module_bindings(parse_python(src["functional"], "the functional block"))[
            0
        ]
    ):
        raise PatchError(
            f"the block of torch_correlation/functional.py does not define '{FUNCTION}'"
        )
    tree = Tree(pytorch_root)
    for directory, key in ((NATIVE_DST, "native"), (FUNCTORCH_DST, "functorch")):
        if not (pytorch_root / directory).is_dir():
            raise AnchorError(directory, "the directory itself")
        for rel, text in src[key].items():
            copy_file(tree, f"{directory}/{rel}", text)
    for here, dst in TEST_FILES:
        copy_file(tree, dst, upstream_test(src["tests"][dst], here))
    copy_file(tree, DST_MODULE, module_file(src["module_header"], src["module_class"]))

    for rel, key, block in YAML_ENTRIES:
        edit_yaml(tree, rel, key, YAML_ANCHOR, src[block])
    for rel, block in CPP_BLOCKS:
        edit_cpp_block_before(
            tree,
            rel,
            src[block],
            MANUAL_NAMESPACE_END,
            "} // namespace torch::autograd::generated::details",
        )
    for rel, block, what, after in PYTHON_BLOCKS:
        edit_python_block(tree, rel, src[block], what, after)
    for rel, variable, block, anchor, ours in LIST_ELEMENTS:
        insert_after_element(
            tree,
            rel,
            variable,
            _call_named(anchor),
            f"the {anchor} entry of {variable}",
            _call_named(ours),
            f"an entry for {ours}",
            src[block],
        )
    for rel, variable, value, prefix in SORTED_STRINGS:
        insert_sorted_string(tree, rel, variable, value, prefix)
    for rel, macro, after, entry in MACRO_ENTRIES:
        add_macro_entry(tree, rel, macro, after, entry)
    for rel, block_start, after, line in BLOCK_LINES:
        add_line_in_block(tree, rel, block_start, after, line)
    for rel, heading, after, item in MARKDOWN_ITEMS:
        add_markdown_list_item(tree, rel, heading, after, item)
    for base, section, item in DOC_ITEMS:
        add_autosummary_item(tree, docs_file(tree, base), section, item)
    add_py_module(tree, docs_file(tree, DST_DOCS_NN), f"torch.nn.modules.{FUNCTION}")

    # Edits computed from the sources.
    edit_build_variables(tree, sorted(src["native"]))
    edit_gen_pyi(tree, src["schema"])
    edit_overrides(tree, src["schema"])
    edit_flop_registry(tree, src["flop"])
    edit_modules_init(tree)
    check_nn_init(tree)
    edit_decomp_lists(tree)
    edit_inductor_fallbacks(tree)
    edit_fake_tensor_symint_meta(tree)
    edit_mps_unsupported(tree)
    edit_has_decomp_expect(tree, src["native_yaml"], src["decomp"])

    for rel, _, new in tree.changes():
        if rel.endswith(".py"):
            compile_check(new, rel)
    check_additive(tree)
    return tree
