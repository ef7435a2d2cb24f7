"""The patch's inputs: this repository's files, read once, and the blocks
between their ``[... begin]``/``[... end]`` markers."""

from __future__ import annotations

import ast
import re

from .model import PatchError
from .pyedit import parse_python
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

FUNCTION = "correlation"
MODULE_CLASS = "Correlation"

# Test files copied into the PyTorch tree: (path here, path in PyTorch).
TEST_FILES = [
    ("test/test_correlation.py", "test/nn/test_correlation.py"),
    ("test/test_correlation_hypothesis.py", "test/nn/test_correlation_hypothesis.py"),
    ("test/test_correlation_pt2.py", "test/nn/test_correlation_pt2.py"),
    ("test/test_correlation_narrow.py", "test/nn/test_correlation_narrow.py"),
    ("test/test_correlation_offset.py", "test/nn/test_correlation_offset.py"),
    (
        "test/test_correlation_module_offset.py",
        "test/nn/test_correlation_module_offset.py",
    ),
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
FUNCTORCH_SRC = "aten_functorch"
FUNCTORCH_DST = "aten/src/ATen/functorch"
NATIVE_REQUIRED = (
    "SpatialCorrelationUtils.h",
    "SpatialCorrelation.cpp",
    "cpu/SpatialCorrelationKernel.h",
    "cpu/SpatialCorrelationKernel.cpp",
    "cpu/SpatialCorrelationNarrowKernel.h",
    "cpu/SpatialCorrelationOffsetBlocks.h",
    "cpu/SpatialCorrelationOffsetKernel.cpp",
    "cuda/SpatialCorrelation.cu",
    "cuda/SpatialCorrelation.cuh",
    "cuda/SpatialCorrelationOffset.cuh",
)

SRC_NATIVE_YAML = "native_functions_patch.yaml"
SRC_DERIVATIVES_YAML = "derivatives_patch.yaml"
SRC_FUNCTIONAL = "torch_correlation/functional.py"
SRC_MODULES = "torch_correlation/modules.py"
SRC_FLOP = "torch_correlation/_flop_counter.py"
SRC_DECOMP = "torch_correlation/_decomp.py"
SRC_MANUAL_H = "csrc/autograd/FunctionsManual_correlation.h"
SRC_MANUAL_CPP = "csrc/autograd/FunctionsManual_correlation.cpp"
SRC_MODULE_HEADER = "patch/module_header.py"
SRC_OPINFO = "patch/opinfo.py"
SRC_MODULEINFO = "patch/moduleinfo.py"


# The marked blocks the patch places: (key, source file, comment leader, marker).
MARKED_BLOCKS = (
    ("functional", SRC_FUNCTIONAL, "#", "correlation"),
    ("module_class", SRC_MODULES, "#", "module"),
    ("flop", SRC_FLOP, "#", "correlation"),
    ("moduleinfo_inputs", SRC_MODULEINFO, "#", "module_inputs"),
    ("moduleinfo_entry", SRC_MODULEINFO, "#", "moduleinfo"),
    ("decomp", SRC_DECOMP, "#", "decomp"),
    ("manual_h", SRC_MANUAL_H, "//", "correlation"),
    ("manual_cpp", SRC_MANUAL_CPP, "//", "correlation"),
    ("module_header", SRC_MODULE_HEADER, "#", "header"),
    ("opinfo_samples", SRC_OPINFO, "#", "sample_inputs"),
    ("opinfo_entry", SRC_OPINFO, "#", "opinfo"),
)


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
    pattern = re.compile(
        rf"^- {key}: ([A-Za-z0-9_]+)(?:\.([A-Za-z0-9_]+))?\(", re.MULTILINE
    )
    names = [
        m.group(1) + (f".{m.group(2)}" if m.group(2) else "")
        for m in pattern.finditer(body)
    ]
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
            raise PatchError(
                f"{path}: {len(data)} entries, but {len(names)} '- {key}:' lines"
            )
    return body, names


def python_signature(
    native_body: str, name: str, path: str
) -> list[tuple[str, str, str | None]]:
    """``(name, schema type, Python default or None)`` per argument of ``name``'s
    schema, with ``("*", "", None)`` where keyword-only arguments start."""
    match = re.search(
        rf"^- func: {re.escape(name)}\((.*)\) -> ", native_body, re.MULTILINE
    )
    if match is None:
        raise PatchError(f"{path}: no '- func: {name}(...)' entry")
    out: list[tuple[str, str, str | None]] = []
    for part in (p.strip() for p in match.group(1).split(",")):
        if part == "*":
            out.append(("*", "", None))
            continue
        type_, _, rest = part.partition(" ")
        arg, _, default = rest.partition("=")
        out.append((arg, type_, default or None))
    return out


def pyi_type(schema_type: str) -> str:
    """The stub type of a schema type, in gen_pyi's hand-written style."""
    base = schema_type.rstrip("?")
    types = {"Tensor": "Tensor", "int": "int", "float": "float", "bool": "bool"}
    out = "_int | _size" if re.fullmatch(r"int\[\d*\]", base) else types.get(base)
    if out is None:
        raise PatchError(f"no stub type for the schema type '{schema_type}'")
    return out + (" | None" if schema_type.endswith("?") else "")


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
    for key, directory, required in (
        ("native", NATIVE_SRC, NATIVE_REQUIRED),
        ("functorch", FUNCTORCH_SRC, ("BatchRulesSpatialCorrelation.cpp",)),
    ):
        files: dict[str, str] = {}
        if (source_root / directory).is_dir():
            for path in sorted((source_root / directory).rglob("*")):
                rel = path.relative_to(source_root / directory).as_posix()
                if path.is_file() and not _ignored_file(rel):
                    files[rel] = read(f"{directory}/{rel}")
        missing += [f"{directory}/{rel}" for rel in required if rel not in files]
        src[key] = files
    if not src["functorch"]:
        missing.append(f"{FUNCTORCH_SRC}/ (the functorch batch rules)")
    texts = {
        name: read(name)
        for name in (
            SRC_NATIVE_YAML,
            SRC_DERIVATIVES_YAML,
            SRC_FUNCTIONAL,
            SRC_MODULES,
            SRC_FLOP,
            SRC_DECOMP,
            SRC_MANUAL_H,
            SRC_MANUAL_CPP,
            SRC_MODULE_HEADER,
            SRC_OPINFO,
            SRC_MODULEINFO,
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
    src["derivatives_yaml"] = yaml_entries(
        texts[SRC_DERIVATIVES_YAML], SRC_DERIVATIVES_YAML, "name"
    )
    src["schema"] = python_signature(src["native_yaml"][0], FUNCTION, SRC_NATIVE_YAML)
    for key, rel, comment, marker in MARKED_BLOCKS:
        src[key] = extract_block(
            texts[rel], f"{comment} [{marker} begin]", f"{comment} [{marker} end]", rel
        )
    return src


def _ignored_file(rel: str) -> bool:
    parts = rel.split("/")
    name = parts[-1]
    return any(p.startswith(".") or p == "__pycache__" for p in parts) or name.endswith(
        ("~", ".o", ".so", ".pyc", ".orig", ".rej", ".swp")
    )


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
            return (node.module or "").split(".")[
                0
            ] == "torch_correlation" and node.level == 0
        return False

    module = parse_python("\n".join(line for _, line in kept), path)
    for node in reversed(module.body):
        if isinstance(node, ast.Import) and is_preview(node) and len(node.names) == 1:
            del kept[node.lineno - 1 : node.end_lineno]
    result = "\n".join(line for _, line in kept)
    uses = sorted(
        {
            kept[n.lineno - 1][0]
            for n in ast.walk(parse_python(result, path))
            if is_preview(n)
        }
    )
    if uses:
        raise PatchError(
            f"{path}: uses the preview package torch_correlation (line "
            + ", ".join(map(str, uses))
            + f"), which upstream does not have. End such lines with '{PREVIEW_ONLY_LINE}' "
            f"or wrap them in '{PREVIEW_ONLY_BEGIN}' / '{PREVIEW_ONLY_END}' lines. "
            "Nothing was written."
        )
    return result
