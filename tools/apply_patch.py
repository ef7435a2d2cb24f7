#!/usr/bin/env python3
"""Apply the ``torch.nn.functional.correlation`` patch to a PyTorch checkout.

Usage::

    python tools/apply_patch.py PYTORCH_ROOT                  # apply
    python tools/apply_patch.py PYTORCH_ROOT --check          # report only
    python tools/apply_patch.py PYTORCH_ROOT --emit-patch correlation.patch

The patch is built from the files of this repository (``--source-root``, by
default the directory above ``tools/``). What goes where, and next to which
anchor, is listed in ``plan()`` below:

* ``aten_native/**`` is copied to ``aten/src/ATen/native/**``.
* The entries of ``native_functions_patch.yaml`` and ``derivatives_patch.yaml``
  go right after the ``grid_sampler_3d_backward`` entry (the end of the
  grid_sampler family) of ``native_functions.yaml`` and ``derivatives.yaml``.
  The leading comment block of each patch file (up to its first blank or
  bare ``#`` line) describes the file itself and is not copied.
* The blocks between ``[correlation begin]``/``[correlation end]`` (or
  ``[meta ...]``, ``[decomp ...]``, ``[module ...]``) markers go into
  ``torch/nn/functional.py`` (after ``grid_sample``),
  ``torch/_meta_registrations.py`` (after the ``grid_sampler_3d`` meta),
  ``torch/_decomp/decompositions.py`` (after the ``grid_sampler_2d``
  decomposition), ``torch/nn/modules/correlation.py`` (a new file: the header
  in ``patch/module_header.py`` plus the class), and the end of the
  ``torch::autograd::generated::details`` namespace of
  ``torch/csrc/autograd/FunctionsManual.{h,cpp}``.
* Derived from the ``correlation`` signature: the ``get_testing_overrides``
  entry in ``torch/overrides.py`` and the stub in
  ``torch/nn/functional.pyi.in``.
* Sorted-list entries: ``torch/nn/modules/__init__.py`` (import and
  ``__all__``; ``torch/nn/__init__.py`` re-exports it with ``*``, which is
  checked), ``torch/_dynamo/trace_rules.py``, ``aten.correlation`` in the core
  ATen decompositions (``torch/_decomp/__init__.py``) and in Inductor's
  ``decomps_to_exclude`` (``torch/_inductor/decomposition.py``), with its
  explicit fallback (``make_fallback`` in ``torch/_inductor/lowering.py``,
  after the ``_cdist`` fallbacks), the docs
  (``docs/source/nn.functional.{md,rst}``, ``docs/source/nn.{md,rst}``, incl.
  the ``py:module`` list).
* ``KERNEL_CUDA``/``KERNEL_CPU(correlation, lower_precision_fp)`` in
  ``aten/src/ATen/autocast_mode.cpp``; the OpInfo of ``patch/opinfo.py`` in
  ``torch/testing/_internal/common_methods_invocations.py``.
* Our operator overloads that the decomposition block does not cover are
  listed in ``test/expect/HasDecompTest.test_has_decomposition.expect``.
* The test files of ``TEST_FILES`` go to ``test/nn/``, without the preview
  package: top-level ``import torch_correlation`` statements and lines marked
  ``# [preview only]`` (or between ``# [preview only begin]`` and
  ``# [preview only end]``) are dropped; any other use is an error.

Guarantees:

* All edits are computed in memory before anything is written. A missing
  source file, or a target file that no longer holds the anchor an edit needs,
  stops the run with an error naming the file and the anchor, and nothing is
  written.
* Idempotent: an edit whose text is already in place is skipped, so a second
  run changes nothing. A target holding a *different* version of our text
  (from an older run) is an error; restore that file (``git checkout --
  FILE``) and rerun.
* Inserted Python blocks are checked: every global name they use must be
  defined in the target module (missing ``typing`` names are added to its
  ``from typing import`` line), and every modified Python file must compile.

Exit status: 0 = applied, or nothing to do; 1 = ``--check`` found pending
edits (it never writes); 2 = error, nothing written. ``--emit-patch FILE``
writes the pending change as one ``git diff``-style patch (``a/``/``b/``
prefixes, new files against ``/dev/null``; ``git apply`` accepts it) and does
not touch the tree.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import difflib
import os
import re
import shutil
import sys
import typing
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]

# Test files copied into the PyTorch tree: (path here, path in PyTorch).
TEST_FILES = [
    ("test/test_correlation.py", "test/nn/test_correlation.py"),
    ("test/test_correlation_hypothesis.py", "test/nn/test_correlation_hypothesis.py"),
    ("test/test_correlation_pt2.py", "test/nn/test_correlation_pt2.py"),
    ("test/correlation_reference.py", "test/nn/correlation_reference.py"),
]
# In test files, top-level ``import torch_correlation`` statements (the preview
# package) are dropped, and so are lines ending in PREVIEW_ONLY_LINE and lines
# between PREVIEW_ONLY_BEGIN and PREVIEW_ONLY_END. Any other use of
# ``torch_correlation`` left in a test file is an error.
PREVIEW_ONLY_LINE = "# [preview only]"
PREVIEW_ONLY_BEGIN = "# [preview only begin]"
PREVIEW_ONLY_END = "# [preview only end]"

NATIVE_SRC = "aten_native"
NATIVE_DST = "aten/src/ATen/native"
NATIVE_REQUIRED = (
    "SpatialCorrelationUtils.h",
    "SpatialCorrelation.cpp",
    "cpu/SpatialCorrelationKernel.h",
    "cpu/SpatialCorrelationKernel.cpp",
    "cuda/SpatialCorrelation.cu",
)

SRC_NATIVE_YAML = "native_functions_patch.yaml"
SRC_DERIVATIVES_YAML = "derivatives_patch.yaml"
SRC_FUNCTIONAL = "torch_correlation/functional.py"
SRC_MODULES = "torch_correlation/modules.py"
SRC_META = "torch_correlation/_meta.py"
SRC_DECOMP = "torch_correlation/_decomp.py"
SRC_MANUAL_H = "csrc/autograd/FunctionsManual_correlation.h"
SRC_MANUAL_CPP = "csrc/autograd/FunctionsManual_correlation.cpp"
SRC_MODULE_HEADER = "patch/module_header.py"
SRC_OPINFO = "patch/opinfo.py"

DST_NATIVE_YAML = "aten/src/ATen/native/native_functions.yaml"
DST_DERIVATIVES_YAML = "tools/autograd/derivatives.yaml"
DST_FUNCTIONAL = "torch/nn/functional.py"
DST_FUNCTIONAL_STUB = "torch/nn/functional.pyi.in"
DST_MODULE = "torch/nn/modules/correlation.py"
DST_MODULES_INIT = "torch/nn/modules/__init__.py"
DST_NN_INIT = "torch/nn/__init__.py"
DST_OVERRIDES = "torch/overrides.py"
DST_META = "torch/_meta_registrations.py"
DST_DECOMP = "torch/_decomp/decompositions.py"
DST_TRACE_RULES = "torch/_dynamo/trace_rules.py"
DST_DECOMP_INIT = "torch/_decomp/__init__.py"
DST_INDUCTOR_DECOMP = "torch/_inductor/decomposition.py"
DST_INDUCTOR_LOWERING = "torch/_inductor/lowering.py"
DST_OPINFO = "torch/testing/_internal/common_methods_invocations.py"
DST_MANUAL_H = "torch/csrc/autograd/FunctionsManual.h"
DST_MANUAL_CPP = "torch/csrc/autograd/FunctionsManual.cpp"
DST_AUTOCAST = "aten/src/ATen/autocast_mode.cpp"
DST_DOCS_FUNCTIONAL = "docs/source/nn.functional"  # .md (current) or .rst (older)
DST_DOCS_NN = "docs/source/nn"
DST_HAS_DECOMP_EXPECT = "test/expect/HasDecompTest.test_has_decomposition.expect"

FUNCTION = "correlation"
MODULE_CLASS = "Correlation"
MANUAL_NAMESPACE_END = re.compile(
    r"^\}\s*//\s*namespace\s+torch::autograd::generated::details\s*$"
)

EXIT_OK, EXIT_PENDING, EXIT_ERROR = 0, 1, 2


class PatchError(Exception):
    """Stops the whole run; nothing has been written."""


class AnchorError(PatchError):
    """A target file no longer has the text an edit is anchored to."""

    def __init__(self, path: str, anchor: str) -> None:
        self.path = path
        self.anchor = anchor
        super().__init__(
            f"{path}: anchor not found: {anchor}\n"
            "  The file has moved on since this patch was written; update the "
            "anchor in tools/apply_patch.py. Nothing was written."
        )


def outdated(path: str, what: str) -> PatchError:
    return PatchError(
        f"{path}: already contains {what}, but not the text this patch would "
        f"insert (an older apply?). Restore the file (git checkout -- {path}) "
        "and rerun. Nothing was written."
    )


# --------------------------------------------------------------------------
# Sources (this repository)
# --------------------------------------------------------------------------


def extract_block(text: str, begin: str, end: str, path: str) -> str:
    """The lines strictly between the ``begin`` and ``end`` marker lines."""
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise PatchError(
            f"{path}: expected exactly one '{begin}' line followed by one "
            f"'{end}' line (found {len(starts)} and {len(ends)})"
        )
    body = "\n".join(lines[starts[0] + 1 : ends[0]]).strip("\n")
    if not body.strip():
        raise PatchError(f"{path}: the block between '{begin}' and '{end}' is empty")
    return body


def yaml_entries(text: str, path: str, key: str) -> tuple[str, list[str]]:
    """Entries of a ``*_patch.yaml`` file, without its leading comment block.

    Returns the text to insert and the op names (``func:``/``name:`` up to the
    first ``(`` or ``.``) it defines.
    """
    lines = text.split("\n")
    i = 0
    if lines and lines[0].startswith("#"):
        while i < len(lines) and lines[i].startswith("#") and lines[i].strip() != "#":
            i += 1
        if i < len(lines) and lines[i].strip() in ("", "#"):
            i += 1
    body = "\n".join(lines[i:]).strip("\n")
    pattern = re.compile(rf"^- {key}: ([A-Za-z0-9_]+)(?:\.([A-Za-z0-9_]+))?\(", re.M)
    names = [m.group(1) + (f".{m.group(2)}" if m.group(2) else "") for m in pattern.finditer(body)]
    if not names:
        raise PatchError(f"{path}: no '- {key}: ...' entries found")
    try:
        import yaml
    except ImportError:  # PyYAML is optional; torchgen needs it anyway
        yaml = None
    if yaml is not None:
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError as e:
            raise PatchError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, list) or not all(
            isinstance(entry, dict) and key in entry for entry in data
        ):
            raise PatchError(f"{path}: expected a list of entries with a '{key}' key")
        if len(data) != len(names):
            raise PatchError(f"{path}: {len(data)} entries, but {len(names)} '- {key}:' lines")
    return body, names


def load_sources(source_root: Path) -> dict[str, object]:
    """Read every source up front, so that missing ones are reported together."""
    missing: list[str] = []

    def read(rel: str) -> str:
        path = source_root / rel
        if not path.is_file():
            missing.append(rel)
            return ""
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()

    src: dict[str, object] = {}
    native_dir = source_root / NATIVE_SRC
    native: dict[str, str] = {}
    if native_dir.is_dir():
        for path in sorted(native_dir.rglob("*")):
            rel = path.relative_to(native_dir).as_posix()
            if path.is_file() and not _ignored_file(rel):
                native[rel] = read(f"{NATIVE_SRC}/{rel}")
    for rel in NATIVE_REQUIRED:
        if rel not in native:
            missing.append(f"{NATIVE_SRC}/{rel}")
    src["native"] = native
    texts = {
        name: read(name)
        for name in (
            SRC_NATIVE_YAML,
            SRC_DERIVATIVES_YAML,
            SRC_FUNCTIONAL,
            SRC_MODULES,
            SRC_META,
            SRC_DECOMP,
            SRC_MANUAL_H,
            SRC_MANUAL_CPP,
            SRC_MODULE_HEADER,
            SRC_OPINFO,
        )
    }
    src["tests"] = {dst: read(here) for here, dst in TEST_FILES}
    if missing:
        raise PatchError(
            f"missing source files under {source_root}:\n"
            + "".join(f"  {rel}\n" for rel in missing)
            + "Nothing was written."
        )
    src["native_yaml"] = yaml_entries(texts[SRC_NATIVE_YAML], SRC_NATIVE_YAML, "func")
    src["derivatives_yaml"] = yaml_entries(texts[SRC_DERIVATIVES_YAML], SRC_DERIVATIVES_YAML, "name")
    src["functional"] = extract_block(
        texts[SRC_FUNCTIONAL], "# [correlation begin]", "# [correlation end]", SRC_FUNCTIONAL
    )
    src["module_class"] = extract_block(
        texts[SRC_MODULES], "# [module begin]", "# [module end]", SRC_MODULES
    )
    src["meta"] = extract_block(texts[SRC_META], "# [meta begin]", "# [meta end]", SRC_META)
    src["decomp"] = extract_block(
        texts[SRC_DECOMP], "# [decomp begin]", "# [decomp end]", SRC_DECOMP
    )
    src["manual_h"] = extract_block(
        texts[SRC_MANUAL_H], "// [correlation begin]", "// [correlation end]", SRC_MANUAL_H
    )
    src["manual_cpp"] = extract_block(
        texts[SRC_MANUAL_CPP], "// [correlation begin]", "// [correlation end]", SRC_MANUAL_CPP
    )
    src["module_header"] = extract_block(
        texts[SRC_MODULE_HEADER], "# [header begin]", "# [header end]", SRC_MODULE_HEADER
    )
    src["opinfo_samples"] = extract_block(
        texts[SRC_OPINFO], "# [sample_inputs begin]", "# [sample_inputs end]", SRC_OPINFO
    )
    src["opinfo_entry"] = extract_block(
        texts[SRC_OPINFO], "# [opinfo begin]", "# [opinfo end]", SRC_OPINFO
    )
    return src


def _ignored_file(rel: str) -> bool:
    parts = rel.split("/")
    name = parts[-1]
    return (
        any(p.startswith(".") or p == "__pycache__" for p in parts)
        or name.endswith(("~", ".o", ".so", ".pyc", ".orig", ".rej", ".swp"))
    )


# --------------------------------------------------------------------------
# The target tree, staged in memory
# --------------------------------------------------------------------------


class Tree:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.original: dict[str, str | None] = {}
        self.staged: dict[str, str] = {}
        self.notes: dict[str, list[str]] = {}
        self.reasons: dict[str, str] = {}  # why an untouched file needs no change

    def exists(self, rel: str) -> bool:
        return rel in self.staged or (self.root / rel).is_file()

    def read(self, rel: str, required: bool = True) -> str | None:
        if rel in self.staged:
            return self.staged[rel]
        if rel not in self.original:
            path = self.root / rel
            if path.is_file():
                with open(path, encoding="utf-8", newline="") as f:
                    self.original[rel] = f.read()
            else:
                self.original[rel] = None
        text = self.original[rel]
        if text is None and required:
            raise AnchorError(rel, "the file itself (it does not exist)")
        return text

    def stage(self, rel: str, text: str, note: str) -> None:
        """Stage new content; ``note`` says what changed (or that nothing did)."""
        old = self.read(rel, required=False)
        self.notes.setdefault(rel, [])
        if old != text:
            self.staged[rel] = text
            self.notes[rel].append(note)

    def present(self, rel: str, why: str = "") -> None:
        self.notes.setdefault(rel, [])
        if why:
            self.reasons[rel] = why

    def changes(self) -> list[tuple[str, str | None, str]]:
        out = []
        for rel in sorted(self.staged):
            old = self.original.get(rel)
            if self.staged[rel] != old:
                out.append((rel, old, self.staged[rel]))
        return out


# --------------------------------------------------------------------------
# Python helpers
# --------------------------------------------------------------------------


def parse_python(text: str, path: str) -> ast.Module:
    try:
        return ast.parse(text)
    except SyntaxError as e:
        raise PatchError(f"{path}: cannot parse as Python: {e}") from None


def _iter_module_level(body: list[ast.stmt], type_checking: bool = False):
    """Module-level statements, looking into if/try/with blocks."""
    for node in body:
        if isinstance(node, ast.If):
            test = ast.unparse(node.test)
            guarded = type_checking or test in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
            yield from _iter_module_level(node.body, guarded)
            yield from _iter_module_level(node.orelse, type_checking)
        elif isinstance(node, ast.Try):
            for part in (node.body, node.orelse, node.finalbody):
                yield from _iter_module_level(part, type_checking)
            for handler in node.handlers:
                yield from _iter_module_level(handler.body, type_checking)
        elif isinstance(node, ast.With):
            yield from _iter_module_level(node.body, type_checking)
        else:
            yield node, type_checking


def _target_names(target: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def module_bindings(tree: ast.Module) -> tuple[set[str], bool]:
    """Names bound at run time at module level, and whether a ``*`` import exists."""
    names: set[str] = set()
    star = False
    for node, type_checking in _iter_module_level(tree.body):
        if type_checking:
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    star = True
                else:
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names |= _target_names(target)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            names |= _target_names(node.target)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            names |= _target_names(node.target)
    return names, star


def defined_names(tree: ast.Module) -> set[str]:
    """Names a block defines at its top level."""
    names, _ = module_bindings(tree)
    return names


def free_names(tree: ast.Module) -> set[str]:
    """Global names a block reads (approximate: ignores scoping subtleties)."""
    loads: set[str] = set()
    binds: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loads if isinstance(node.ctx, ast.Load) else binds).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            binds.add(node.name)
        elif isinstance(node, ast.arg):
            binds.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                binds.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            binds.add(node.name)
    return loads - binds - set(dir(builtins)) - {"__file__", "__name__"}


TYPING_NAMES = set(typing.__all__)


def add_typing_names(text: str, path: str, names: set[str]) -> str:
    """Add ``names`` to the module's top-level ``from typing import`` line.

    Without such a line, one is inserted before the first top-level import.
    """
    if not names:
        return text
    tree = parse_python(text, path)
    lines = text.split("\n")
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "typing" and node.level == 0:
            aliases = [(a.name, a.asname) for a in node.names]
            aliases += [(name, None) for name in sorted(names)]
            aliases.sort(key=lambda a: a[0].lower())
            items = [f"{n} as {a}" if a else n for n, a in aliases]
            one_line = "from typing import " + ", ".join(items)
            if len(one_line) <= 88:
                new = [one_line]
            else:
                new = ["from typing import (", *(f"    {item}," for item in items), ")"]
            lines[node.lineno - 1 : node.end_lineno] = new
            return "\n".join(lines)
    first = next(
        (n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))), None
    )
    if first is None:
        raise AnchorError(path, "a top-level import statement (to add 'from typing import')")
    index = first.lineno - 1
    lines[index:index] = ["from typing import " + ", ".join(sorted(names, key=str.lower)), ""]
    return "\n".join(lines)


def check_block_names(target_text: str, path: str, block: str, what: str) -> str:
    """Make sure the names ``block`` reads exist in the target module.

    Returns the target text, possibly with ``typing`` names added.
    """
    block_tree = parse_python(block, f"{what} (the block inserted into {path})")
    target_tree = parse_python(target_text, path)
    available, star = module_bindings(target_tree)
    clashes = sorted(defined_names(block_tree) & available)
    if clashes:
        raise outdated(path, "definitions named " + ", ".join(clashes))
    if star:
        return target_text  # cannot tell what a '*' import brings in
    missing = free_names(block_tree) - available - defined_names(block_tree)
    typing_missing = missing & TYPING_NAMES
    others = missing - typing_missing
    if others:
        raise PatchError(
            f"{path}: {what} uses names that module does not define: "
            + ", ".join(sorted(others))
            + ". Use names the module already has (or add the import to the "
            "patch). Nothing was written."
        )
    return add_typing_names(target_text, path, typing_missing)


def top_level_def(tree: ast.Module, name: str) -> ast.stmt | None:
    found = [
        n
        for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == name
    ]
    return found[-1] if found else None


def insert_after_def(text: str, path: str, def_name: str, block: str) -> str:
    """Insert ``block`` after the top-level ``def def_name``, same spacing."""
    tree = parse_python(text, path)
    node = top_level_def(tree, def_name)
    if node is None:
        raise AnchorError(path, f"top-level 'def {def_name}(...)'")
    lines = text.split("\n")
    end = node.end_lineno
    while end < len(lines) and lines[end].startswith((" ", "\t")) and lines[end].lstrip().startswith("#"):
        end += 1
    gap = 0
    while end + gap < len(lines) - 1 and not lines[end + gap].strip():
        gap += 1
    gap = min(max(gap, 1), 2)
    lines[end:end] = [""] * gap + block.split("\n")
    return "\n".join(lines)


def signature_parts(fn: ast.FunctionDef, src: str, annotate: bool) -> list[str]:
    """Parameters of ``fn`` as text; with ``annotate``, stub style."""
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)

    def one(arg: ast.arg, default: ast.expr | None) -> str:
        text = arg.arg
        if annotate and arg.annotation is not None:
            text += ": " + ast.unparse(pep604(arg.annotation))
        if default is not None:
            if annotate:
                text += " = ..."
            else:
                text += "=" + (ast.get_source_segment(src, default) or ast.unparse(default))
        return text

    parts = []
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        parts.append(one(arg, default))
        if args.posonlyargs and i == len(args.posonlyargs) - 1:
            parts.append("/")
    if args.vararg is not None:
        parts.append("*" + args.vararg.arg)
    elif args.kwonlyargs:
        parts.append("*")
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        parts.append(one(arg, default))
    if args.kwarg is not None:
        parts.append("**" + args.kwarg.arg)
    return parts


def pep604(node: ast.expr) -> ast.expr:
    """``Optional[X]`` -> ``X | None``, ``Union[A, B]`` -> ``A | B``, ``Tuple`` -> ``tuple``."""

    class Rewrite(ast.NodeTransformer):
        def visit_Subscript(self, n: ast.Subscript) -> ast.AST:
            n = self.generic_visit(n)
            base = n.value
            name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
            items = n.slice.elts if isinstance(n.slice, ast.Tuple) else [n.slice]
            if name == "Optional":
                items = [n.slice, ast.Constant(None)]
            if name in ("Optional", "Union"):
                out = items[0]
                for item in items[1:]:
                    out = ast.BinOp(left=out, op=ast.BitOr(), right=item)
                return out
            if name in ("Tuple", "List", "Dict", "Set"):
                n.value = ast.Name(id=name.lower(), ctx=ast.Load())
            return n

    import copy

    return Rewrite().visit(copy.deepcopy(node))


def function_def(block: str, path: str, name: str) -> ast.FunctionDef:
    tree = parse_python(block, path)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise PatchError(f"{path}: the marked block does not define 'def {name}(...)'")


def compile_check(text: str, path: str) -> None:
    try:
        compile(text, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise PatchError(f"{path}: the patched file does not compile: {e}") from None


# --------------------------------------------------------------------------
# Generic edits
# --------------------------------------------------------------------------


def find_entry_end(lines: list[str], start: int) -> int:
    """Index of the line after a YAML entry starting at ``start``."""
    end = start + 1
    while end < len(lines) and lines[end].strip() and not lines[end].startswith(("- ", "#")):
        end += 1
    return end


def edit_yaml(tree: Tree, rel: str, key: str, anchor_op: str, entries: tuple[str, list[str]]) -> None:
    body, names = entries
    text = tree.read(rel)
    if "\n" + body + "\n" in "\n" + text:
        tree.present(rel)
        return
    for name in names:
        if re.search(rf"^- {key}: {re.escape(name)}\(", text, re.M):
            raise outdated(rel, f"an entry '- {key}: {name}(...)'")
    lines = text.split("\n")
    anchor = re.compile(rf"^- {key}: {re.escape(anchor_op)}\(")
    starts = [i for i, line in enumerate(lines) if anchor.match(line)]
    if not starts:
        raise AnchorError(rel, f"the '- {key}: {anchor_op}(' entry")
    end = find_entry_end(lines, starts[-1])
    new = [""] + body.split("\n")
    if end < len(lines) and lines[end].strip():
        new.append("")
    lines[end:end] = new
    tree.stage(rel, "\n".join(lines), f"insert {', '.join(names)} after {anchor_op}")


def edit_python_block(
    tree: Tree, rel: str, block: str, what: str, after_def: str
) -> None:
    text = tree.read(rel)
    if block in text:
        tree.present(rel)
        return
    text = check_block_names(text, rel, block, what)
    text = insert_after_def(text, rel, after_def, block)
    tree.stage(rel, text, f"insert {what} after {after_def}")


def edit_cpp_namespace_end(tree: Tree, rel: str, block: str) -> None:
    text = tree.read(rel)
    if block in text:
        tree.present(rel)
        return
    ours = set(re.findall(r"\b(\w*correlation\w*)\s*\(", block))
    for name in sorted(ours):
        if re.search(rf"\b{re.escape(name)}\s*\(", text):
            raise outdated(rel, f"'{name}(...)'")
    lines = text.split("\n")
    ends = [i for i, line in enumerate(lines) if MANUAL_NAMESPACE_END.match(line)]
    if not ends:
        raise AnchorError(rel, "'} // namespace torch::autograd::generated::details'")
    index = ends[-1]
    new = block.split("\n") + [""]
    if index > 0 and lines[index - 1].strip():
        new.insert(0, "")
    lines[index:index] = new
    tree.stage(rel, "\n".join(lines), "append to namespace torch::autograd::generated::details")


def insert_sorted_string(
    tree: Tree, rel: str, variable: str, value: str, prefix: str
) -> None:
    """Insert the string ``value`` into the list literal assigned to ``variable``.

    The list may be wrapped in a call (``dict.fromkeys([...])``). The new line
    goes before the first element with ``prefix`` that sorts after ``value``.
    """
    text = tree.read(rel)
    module = parse_python(text, rel)
    elements = None
    for node, _ in _iter_module_level(module.body):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if not any(isinstance(t, ast.Name) and t.id == variable for t in targets):
            continue
        value_node = node.value
        if isinstance(value_node, ast.Call) and value_node.args:
            value_node = value_node.args[0]
        if isinstance(value_node, (ast.List, ast.Tuple, ast.Set)):
            elements = [
                e for e in value_node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
            break
    if elements is None:
        raise AnchorError(rel, f"the list assigned to '{variable}'")
    if any(e.value == value for e in elements):
        tree.present(rel)
        return
    same = [e for e in elements if e.value.startswith(prefix)]
    if not same:
        raise AnchorError(rel, f"entries starting with '{prefix}' in '{variable}'")
    lines = text.split("\n")
    after = [e for e in same if e.value > value]
    ref = after[0] if after else same[-1]
    source_line = lines[ref.lineno - 1]
    if not source_line.strip().startswith(("'", '"')):
        raise AnchorError(rel, f"one string per line in '{variable}'")
    quote = source_line.strip()[0]
    indent = source_line[: len(source_line) - len(source_line.lstrip())]
    index = ref.lineno - 1 if after else ref.end_lineno
    lines.insert(index, f"{indent}{quote}{value}{quote},")
    tree.stage(rel, "\n".join(lines), f"add {value!r} to {variable}")


def insert_list_expr(
    tree: Tree,
    rel: str,
    list_node: ast.List | None,
    anchor: str,
    expr: str,
    keep_sorted: bool,
    comment: str = "",
) -> None:
    """Add ``expr`` (one element per line) to a list literal of ``rel``.

    With ``keep_sorted`` it goes before the first element that sorts after it,
    else at the end of the list.
    """
    if list_node is None or not list_node.elts:
        raise AnchorError(rel, anchor)
    text = tree.read(rel)
    lines = text.split("\n")
    elements = [(ast.unparse(e), e) for e in list_node.elts]
    if any(name == expr for name, _ in elements):
        tree.present(rel)
        return
    later = [e for name, e in elements if name > expr] if keep_sorted else []
    ref = later[0] if later else elements[-1][1]
    if lines[ref.lineno - 1][: ref.col_offset].strip():
        raise AnchorError(rel, f"{anchor} with one element per line")
    indent = " " * ref.col_offset
    index = ref.lineno - 1 if later else ref.end_lineno
    lines.insert(index, f"{indent}{expr},{'  # ' + comment if comment else ''}")
    tree.stage(rel, "\n".join(lines), f"add {expr} to {anchor}")


# --------------------------------------------------------------------------
# Specific edits
# --------------------------------------------------------------------------


def copy_file(tree: Tree, rel: str, text: str) -> None:
    if tree.read(rel, required=False) == text:
        tree.present(rel)
        return
    tree.stage(rel, text, "create" if not tree.exists(rel) else "update")


def edit_functional(tree: Tree, block: str) -> None:
    function_def(block, SRC_FUNCTIONAL, FUNCTION)
    edit_python_block(tree, DST_FUNCTIONAL, block, f"def {FUNCTION}", "grid_sample")


def functional_stub(fn: ast.FunctionDef, block: str, with_all: bool) -> str:
    params = signature_parts(fn, block, annotate=True)
    returns = ast.unparse(pep604(fn.returns)) if fn.returns is not None else "Tensor"
    one_line = f"def {fn.name}({', '.join(params)}) -> {returns}: ..."
    if len(one_line) <= 120:
        text = one_line
    else:
        text = "\n".join([f"def {fn.name}(", *(f"    {p}," for p in params), f") -> {returns}: ..."])
    if with_all:
        text += f'\n\n__all__ += ["{fn.name}"]'
    return text


def edit_functional_stub(tree: Tree, block: str) -> None:
    rel = DST_FUNCTIONAL_STUB
    text = tree.read(rel)
    fn = function_def(block, SRC_FUNCTIONAL, FUNCTION)
    stub = functional_stub(fn, block, with_all="__all__ += [" in text)
    if stub in text:
        tree.present(rel)
        return
    if re.search(rf"^def {FUNCTION}\(", text, re.M):
        raise outdated(rel, f"a stub 'def {FUNCTION}(...)'")
    lines = text.split("\n")
    defs = [(i, m.group(1)) for i, line in enumerate(lines) if (m := re.match(r"def (\w+)\(", line))]
    public = [(i, name) for i, name in defs if not name.startswith("_")]
    if not public:
        raise AnchorError(rel, "top-level stub definitions 'def name(...)'")
    later = [i for i, name in public if name > FUNCTION]
    if not later:
        raise AnchorError(rel, f"a stub 'def <name>(...)' that sorts after '{FUNCTION}'")
    lines[later[0] : later[0]] = stub.split("\n") + [""]
    tree.stage(rel, "\n".join(lines), f"add the stub of {FUNCTION}")


def override_entry(fn: ast.FunctionDef, block: str, indent: str) -> str:
    lam = "lambda " + ", ".join(signature_parts(fn, block, annotate=False)) + ": -1"
    key = f"torch.nn.functional.{fn.name}"
    one_line = f"{indent}{key}: {lam},"
    if len(one_line) <= 120:
        return one_line
    return f"{indent}{key}: (\n{indent}    {lam}\n{indent}),"


def edit_overrides(tree: Tree, block: str) -> None:
    rel = DST_OVERRIDES
    text = tree.read(rel)
    fn = function_def(block, SRC_FUNCTIONAL, FUNCTION)
    module = parse_python(text, rel)
    getter = top_level_def(module, "get_testing_overrides")
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
        raise AnchorError(rel, "'torch.nn.functional.*' entries in get_testing_overrides()")
    entry = override_entry(fn, block, keys[0][1])
    if entry in text:
        tree.present(rel)
        return
    if any(name == FUNCTION for _, _, name in keys):
        raise outdated(rel, f"an entry for torch.nn.functional.{FUNCTION}")
    later = [i for i, _, name in keys if name > FUNCTION]
    if not later:
        raise AnchorError(rel, f"a 'torch.nn.functional.<name>' entry that sorts after '{FUNCTION}'")
    index = later[0]
    lines[index:index] = entry.split("\n")
    tree.stage(rel, "\n".join(lines), f"add torch.nn.functional.{FUNCTION} to get_testing_overrides")


def module_file(header: str, class_block: str) -> str:
    """``torch/nn/modules/correlation.py``: the header (unused imports dropped) and the class."""
    class_tree = parse_python(class_block, f"{SRC_MODULES} (module block)")
    if top_level_def(class_tree, MODULE_CLASS) is None:
        raise PatchError(f"{SRC_MODULES}: the module block does not define 'class {MODULE_CLASS}'")
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
            "import: " + ", ".join(sorted(missing - typing_missing)) + ". Nothing was written."
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


def edit_module_file(tree: Tree, header: str, class_block: str) -> None:
    copy_file(tree, DST_MODULE, module_file(header, class_block))


def edit_modules_init(tree: Tree) -> None:
    rel = DST_MODULES_INIT
    text = tree.read(rel)
    module = parse_python(text, rel)
    lines = text.split("\n")
    relative = [n for n in module.body if isinstance(n, ast.ImportFrom) and n.level == 1]
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
    insert_sorted_string(tree, rel, "__all__", MODULE_CLASS, "")


def check_nn_init(tree: Tree) -> None:
    """``torch.nn`` re-exports ``torch.nn.modules`` with a ``*`` import; nothing to add."""
    rel = DST_NN_INIT
    text = tree.read(rel)
    if not re.search(r"^from (torch\.nn\.modules|\.modules) import \*", text, re.M):
        raise AnchorError(rel, "'from torch.nn.modules import *' (which exports nn.Correlation)")
    tree.present(rel, "no change needed: 'from torch.nn.modules import *' exports nn.Correlation")


def edit_opinfo(tree: Tree, samples: str, entry: str) -> None:
    rel = DST_OPINFO
    edit_python_block(tree, rel, samples, "sample_inputs_correlation", "sample_inputs_grid_sampler_3d")
    text = tree.read(rel)
    if entry in text:
        return
    module = parse_python(text, rel)

    def opinfo(name: str) -> ast.Call | None:
        for node, _ in _iter_module_level(module.body):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else []
            )
            if any(isinstance(t, ast.Name) and t.id == "op_db" for t in targets) and isinstance(node.value, ast.List):
                for elt in node.value.elts:
                    if (
                        isinstance(elt, ast.Call)
                        and elt.args
                        and isinstance(elt.args[0], ast.Constant)
                        and elt.args[0].value == name
                    ):
                        return elt
        return None

    if opinfo(f"nn.functional.{FUNCTION}") is not None:
        raise outdated(rel, f"an OpInfo for nn.functional.{FUNCTION}")
    anchor = opinfo("nn.functional.grid_sample")
    if anchor is None:
        raise AnchorError(rel, "the OpInfo('nn.functional.grid_sample', ...) entry of op_db")
    lines = text.split("\n")
    if not lines[anchor.end_lineno - 1][anchor.end_col_offset :].lstrip().startswith(","):
        raise AnchorError(rel, "a ',' right after the nn.functional.grid_sample OpInfo")
    lines[anchor.end_lineno : anchor.end_lineno] = entry.split("\n")
    tree.stage(rel, "\n".join(lines), "add the OpInfo after nn.functional.grid_sample")


def edit_autocast(tree: Tree) -> None:
    rel = DST_AUTOCAST
    text = tree.read(rel)
    lines = text.split("\n")
    for macro in ("KERNEL_CUDA", "KERNEL_CPU"):
        if re.search(rf"\b{macro}\({FUNCTION}\s*,", "\n".join(lines)):
            continue
        pattern = re.compile(
            rf"^(\s*){macro}\((?!__VA_ARGS__)\w+(?:\s*,\s*\w+)?\s*,\s*lower_precision_fp\)\s*$"
        )
        hits = [i for i, line in enumerate(lines) if pattern.match(line)]
        if not hits:
            raise AnchorError(rel, f"a '{macro}(<op>, lower_precision_fp)' line")
        indent = pattern.match(lines[hits[-1]]).group(1)
        lines.insert(hits[-1] + 1, f"{indent}{macro}({FUNCTION}, lower_precision_fp)")
    new = "\n".join(lines)
    if new == text:
        tree.present(rel)
    else:
        tree.stage(rel, new, "add correlation to the lower_precision_fp lists")


def docs_file(tree: Tree, base: str) -> str:
    for ext in (".md", ".rst"):
        if tree.exists(base + ext):
            return base + ext
    raise AnchorError(f"{base}.md", f"the file itself (neither {base}.md nor {base}.rst exists)")


def _is_heading(lines: list[str], i: int) -> bool:
    """A Markdown ``#`` heading, or an rst title line followed by its underline."""
    if re.match(r"#{1,6}\s", lines[i]):
        return True
    title = lines[i]
    if i + 1 >= len(lines) or not title.strip() or title[0].isspace():
        return False
    underline = lines[i + 1].rstrip()
    return len(underline) >= len(title.rstrip()) and bool(
        re.fullmatch(r"([-=~^\"'#*+])\1{2,}", underline)
    )


def add_autosummary_item(tree: Tree, rel: str, section: str, item: str) -> None:
    text = tree.read(rel)
    lines = text.split("\n")
    start = None
    for i, line in enumerate(lines):
        if _is_heading(lines, i) and line.lstrip("#").strip() == section:
            start = i
            break
    if start is None:
        raise AnchorError(rel, f"the '{section}' section")
    end = next((j for j in range(start + 2, len(lines)) if _is_heading(lines, j)), len(lines))
    auto = next((j for j in range(start, end) if lines[j].strip() == ".. autosummary::"), None)
    items: list[int] = []
    if auto is not None:
        j = auto + 1
        while j < end and (not lines[j].strip() or lines[j].strip().startswith(":")):
            j += 1
        while j < end and lines[j].startswith(" ") and lines[j].strip() and not lines[j].strip().startswith(":"):
            items.append(j)
            j += 1
    if not items:
        raise AnchorError(rel, f"an autosummary list in the '{section}' section")
    if any(lines[j].strip() == item for j in items):
        tree.present(rel)
        return
    last = lines[items[-1]]
    lines.insert(items[-1] + 1, last[: len(last) - len(last.lstrip())] + item)
    tree.stage(rel, "\n".join(lines), f"list {item} under {section}")


def add_py_module(tree: Tree, rel: str, module: str) -> None:
    text = tree.read(rel)
    lines = text.split("\n")
    pattern = re.compile(r"^(\s*)\.\. py:module:: (torch\.nn\.modules\.\w+)\s*$")
    hits = [(i, m.group(2)) for i, line in enumerate(lines) if (m := pattern.match(line))]
    if not hits:
        raise AnchorError(rel, "the '.. py:module:: torch.nn.modules.*' list")
    if any(name == module for _, name in hits):
        tree.present(rel)
        return
    later = [i for i, name in hits if name > module]
    index = later[0] if later else hits[-1][0] + 1
    indent = pattern.match(lines[hits[0][0]]).group(1)
    lines.insert(index, f"{indent}.. py:module:: {module}")
    tree.stage(rel, "\n".join(lines), f"add py:module {module}")


def edit_decomp_lists(tree: Tree) -> None:
    """Core ATen decomposes correlation; Inductor keeps the native kernel."""
    rel = DST_DECOMP_INIT
    module = parse_python(tree.read(rel), rel)
    getter = top_level_def(module, "_core_aten_decompositions_post_autograd")
    found = None
    if getter is not None:
        for node in ast.walk(getter):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "get_decompositions"
                and node.args
                and isinstance(node.args[0], ast.List)
            ):
                found = node.args[0]
    insert_list_expr(
        tree, rel, found,
        "the get_decompositions([...]) list of _core_aten_decompositions_post_autograd()",
        f"aten.{FUNCTION}", keep_sorted=True,
    )
    rel = DST_INDUCTOR_DECOMP
    module = parse_python(tree.read(rel), rel)
    found = None
    for node, _ in _iter_module_level(module.body):
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        )
        if isinstance(target, ast.Name) and target.id == "decomps_to_exclude" and isinstance(node.value, ast.List):
            found = node.value
    insert_list_expr(
        tree, rel, found, "the decomps_to_exclude list", f"aten.{FUNCTION}",
        keep_sorted=False, comment="inductor calls the native kernel",
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
    if any(re.match(rf"make_fallback\(aten\.{FUNCTION}(_backward)?\b", line) for line in lines):
        raise outdated(rel, f"the make_fallback(aten.{FUNCTION}...) lines")
    anchor = "make_fallback(aten._cdist_backward)"
    hits = [i for i, line in enumerate(lines) if line.strip() == anchor]
    if not hits:
        raise AnchorError(rel, f"the top-level '{anchor}' line")
    lines[hits[0] + 1 : hits[0] + 1] = [*INDUCTOR_FALLBACK_COMMENT.split("\n"), *INDUCTOR_FALLBACKS]
    tree.stage(rel, "\n".join(lines), "add the correlation fallbacks after the _cdist ones")


def edit_has_decomp_expect(tree: Tree, native: tuple[str, list[str]], decomp: str) -> None:
    """List our overloads without a decomposition in HasDecompTest's expect file."""
    body, names = native
    overloads = list(names)
    for match in re.finditer(r"^\s+autogen:\s*(.+)$", body, re.M):
        overloads += [name.strip() for name in match.group(1).split(",") if name.strip()]
    decomposed: set[str] = set()
    for node in ast.walk(parse_python(decomp, SRC_DECOMP)):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "register_decomposition":
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
        later = [i for i, line in enumerate(lines) if line.startswith("aten::") and line > name]
        index = later[0] if later else max(i for i, line in enumerate(lines) if line.startswith("aten::")) + 1
        lines.insert(index, name)
        added.append(name)
    if added:
        tree.stage(rel, "\n".join(lines), "list " + ", ".join(added) + " (no decomposition)")
    else:
        tree.present(rel)


def upstream_test(text: str, path: str) -> str:
    """A test file as upstream gets it: without the preview package."""
    kept: list[tuple[int, str]] = []  # (line number in the source file, line)
    skipping = False
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if stripped == PREVIEW_ONLY_BEGIN:
            skipping = True
        elif stripped == PREVIEW_ONLY_END:
            skipping = False
        elif not skipping and not line.rstrip().endswith(PREVIEW_ONLY_LINE):
            kept.append((number, line))
    if skipping:
        raise PatchError(f"{path}: '{PREVIEW_ONLY_BEGIN}' without '{PREVIEW_ONLY_END}'")

    def is_preview(node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id == "torch_correlation"
        if isinstance(node, ast.Import):
            return any(a.name.split(".")[0] == "torch_correlation" for a in node.names)
        if isinstance(node, ast.ImportFrom):
            return (node.module or "").split(".")[0] == "torch_correlation" and node.level == 0
        return False

    module = parse_python("\n".join(line for _, line in kept), path)
    for node in reversed(module.body):
        if isinstance(node, ast.Import) and is_preview(node) and len(node.names) == 1:
            del kept[node.lineno - 1 : node.end_lineno]
    result = "\n".join(line for _, line in kept)
    uses = sorted({kept[n.lineno - 1][0] for n in ast.walk(parse_python(result, path)) if is_preview(n)})
    if uses:
        raise PatchError(
            f"{path}: uses the preview package torch_correlation (line "
            + ", ".join(map(str, uses))
            + f"), which upstream does not have. End such lines with '{PREVIEW_ONLY_LINE}' "
            f"or wrap them in '{PREVIEW_ONLY_BEGIN}' / '{PREVIEW_ONLY_END}' lines. "
            "Nothing was written."
        )
    return result


# --------------------------------------------------------------------------
# Plan, report, write
# --------------------------------------------------------------------------


def plan(pytorch_root: Path, source_root: Path) -> Tree:
    """Compute every edit in memory; raises PatchError before anything is written."""
    if not (pytorch_root / DST_NATIVE_YAML).is_file():
        raise PatchError(
            f"{pytorch_root} does not look like a PyTorch checkout "
            f"({DST_NATIVE_YAML} not found). Nothing was written."
        )
    src = load_sources(source_root)
    tree = Tree(pytorch_root)
    if not (pytorch_root / NATIVE_DST).is_dir():
        raise AnchorError(NATIVE_DST, "the directory itself")
    for rel, text in src["native"].items():
        copy_file(tree, f"{NATIVE_DST}/{rel}", text)
    edit_yaml(tree, DST_NATIVE_YAML, "func", "grid_sampler_3d_backward", src["native_yaml"])
    edit_yaml(tree, DST_DERIVATIVES_YAML, "name", "grid_sampler_3d_backward", src["derivatives_yaml"])
    edit_cpp_namespace_end(tree, DST_MANUAL_H, src["manual_h"])
    edit_cpp_namespace_end(tree, DST_MANUAL_CPP, src["manual_cpp"])
    edit_autocast(tree)
    edit_functional(tree, src["functional"])
    edit_functional_stub(tree, src["functional"])
    edit_module_file(tree, src["module_header"], src["module_class"])
    edit_modules_init(tree)
    check_nn_init(tree)
    edit_overrides(tree, src["functional"])
    edit_python_block(tree, DST_META, src["meta"], "the meta registration", "grid_sampler_3d")
    edit_python_block(tree, DST_DECOMP, src["decomp"], "the decomposition", "grid_sampler_2d")
    edit_decomp_lists(tree)
    edit_inductor_fallbacks(tree)
    insert_sorted_string(
        tree, DST_TRACE_RULES, "torch_c_binding_in_graph_functions",
        f"torch._C._nn.{FUNCTION}", "torch._C._nn.",
    )
    insert_sorted_string(
        tree, DST_TRACE_RULES, "torch_non_c_binding_in_graph_functions",
        f"torch.nn.functional.{FUNCTION}", "torch.nn.functional.",
    )
    edit_opinfo(tree, src["opinfo_samples"], src["opinfo_entry"])
    docs = docs_file(tree, DST_DOCS_FUNCTIONAL)
    add_autosummary_item(tree, docs, "Vision functions", FUNCTION)
    docs = docs_file(tree, DST_DOCS_NN)
    add_autosummary_item(tree, docs, "Vision Layers", f"nn.{MODULE_CLASS}")
    add_py_module(tree, docs, f"torch.nn.modules.{FUNCTION}")
    edit_has_decomp_expect(tree, src["native_yaml"], src["decomp"])
    for (here, dst) in TEST_FILES:
        copy_file(tree, dst, upstream_test(src["tests"][dst], here))
    for rel, _, new in tree.changes():
        if rel.endswith(".py"):
            compile_check(new, rel)
    return tree


def unified_diff(rel: str, old: str | None, new: str) -> str:
    a = old.splitlines(keepends=True) if old is not None else []
    b = new.splitlines(keepends=True)
    out = [f"diff --git a/{rel} b/{rel}\n"]
    if old is None:
        out.append("new file mode 100644\n")
    for line in difflib.unified_diff(a, b, "/dev/null" if old is None else f"a/{rel}", f"b/{rel}"):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def write_changes(root: Path, changes: list[tuple[str, str | None, str]]) -> None:
    """Write all files; on an OS error, restore the ones already written."""
    done: list[tuple[Path, str | None]] = []
    made_dirs: list[Path] = []
    current = ""
    try:
        for rel, old, new in changes:
            current = rel
            path = root / rel
            missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
            made_dirs.extend(sorted(missing, key=lambda p: len(p.parts)))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".apply_patch.tmp")
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(new)
            if old is not None:
                shutil.copymode(path, tmp)
            os.replace(tmp, path)
            done.append((path, old))
    except OSError as e:
        for path, old in reversed(done):
            if old is None:
                path.unlink()
            else:
                with open(path, "w", encoding="utf-8", newline="") as f:
                    f.write(old)
        for directory in reversed(made_dirs):
            try:
                directory.rmdir()
            except OSError:
                pass
        raise PatchError(f"writing {current} failed ({e}); restored the files already written") from None


def report(tree: Tree, dry: bool) -> list[str]:
    """One line per target file: create/modify (with what changed) or ok."""
    out = []
    changed = {rel for rel, _, _ in tree.changes()}
    for rel in sorted(tree.notes):
        if rel in changed:
            state = "create" if tree.original.get(rel) is None else "modify"
            notes = [n for n in tree.notes[rel] if n not in ("create", "update")]
            line = f"  {'would ' if dry else ''}{state} {rel}"
            out.append(line + (f": {'; '.join(notes)}" if notes else ""))
        else:
            out.append(f"  ok ({tree.reasons.get(rel, 'already applied')}) {rel}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Apply the torch.nn.functional.correlation patch to a PyTorch checkout.",
        epilog="Exit status: 0 applied or nothing to do; 1 --check found pending edits; 2 error.",
    )
    parser.add_argument("pytorch_root", type=Path, help="root of the PyTorch source checkout")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if edits are pending")
    parser.add_argument("--emit-patch", type=Path, metavar="FILE", help="write the change as a unified patch instead of applying it")
    parser.add_argument("--source-root", type=Path, default=REPO, help="this repository (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors and the summary")
    args = parser.parse_args(argv)

    try:
        tree = plan(args.pytorch_root.resolve(), args.source_root.resolve())
    except PatchError as e:
        print(f"apply_patch: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    changes = tree.changes()
    dry = args.check or args.emit_patch is not None
    lines = [] if args.quiet else report(tree, dry)

    if args.emit_patch is not None:
        with open(args.emit_patch, "w", encoding="utf-8", newline="") as f:
            f.write("".join(unified_diff(rel, old, new) for rel, old, new in changes))
        lines.append(f"apply_patch: wrote {len(changes)} file diffs to {args.emit_patch}")
    elif args.check:
        lines.append(
            f"apply_patch: {len(changes)} files would change" if changes
            else "apply_patch: nothing to do (already applied)"
        )
    elif changes:
        try:
            write_changes(args.pytorch_root.resolve(), changes)
        except PatchError as e:
            print("\n".join(lines), file=sys.stderr)
            print(f"apply_patch: error: {e}", file=sys.stderr)
            return EXIT_ERROR
        lines.append(f"apply_patch: changed {len(changes)} files under {args.pytorch_root}")
    else:
        lines.append("apply_patch: nothing to do (already applied)")
    print("\n".join(lines))
    return EXIT_PENDING if args.check and changes else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
