"""Edit kinds for Python targets, computed on the AST and applied as line inserts.

Every edit here only inserts lines; anchors are found with ``ast`` (a list or
dict assigned to a name, a top-level ``def``), never by line numbers.
"""

from __future__ import annotations

import ast
import builtins
import typing

from .model import AnchorError, PatchError, Tree, outdated


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
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
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
    """Import ``names`` from ``typing`` on a new line (existing lines stay as they are).

    The line goes after the module's last top-level ``from typing import``, or
    before its first top-level import.
    """
    if not names:
        return text
    tree = parse_python(text, path)
    lines = text.split("\n")
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    typing_imports = [
        n for n in imports if isinstance(n, ast.ImportFrom) and n.module == "typing"
    ]
    if not imports:
        raise AnchorError(
            path, "a top-level import statement (to add 'from typing import')"
        )
    line = "from typing import " + ", ".join(sorted(names, key=str.lower))
    if typing_imports:
        lines.insert(typing_imports[-1].end_lineno, line)
    else:  # its own group, before the other imports
        lines[imports[0].lineno - 1 : imports[0].lineno - 1] = [line, ""]
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
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and n.name == name
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
    while (
        end < len(lines)
        and lines[end].startswith((" ", "\t"))
        and lines[end].lstrip().startswith("#")
    ):
        end += 1
    gap = 0
    while end + gap < len(lines) - 1 and not lines[end + gap].strip():
        gap += 1
    gap = min(max(gap, 1), 2)
    lines[end:end] = [""] * gap + block.split("\n")
    return "\n".join(lines)


def compile_check(text: str, path: str) -> None:
    try:
        compile(text, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise PatchError(f"{path}: the patched file does not compile: {e}") from None


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


def assigned_value(module: ast.Module, variable: str) -> ast.expr | None:
    """The first non-empty literal (list, tuple, set, dict; also wrapped in a call
    such as ``dict.fromkeys([...])``) assigned to ``variable`` anywhere in the module."""
    found = []
    for node in ast.walk(module):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else ([node.target] if isinstance(node, ast.AnnAssign) else [])
        )
        if (
            any(isinstance(t, ast.Name) and t.id == variable for t in targets)
            and node.value is not None
        ):
            value = node.value
            if isinstance(value, ast.Call) and value.args:
                value = value.args[0]
            if (
                isinstance(value, (ast.List, ast.Tuple, ast.Set))
                and value.elts
                or isinstance(value, ast.Dict)
                and value.keys
            ):
                found.append(value)
    return min(found, key=lambda n: n.lineno) if found else None


def _insert_line(
    tree: Tree, rel: str, lines: list[str], index: int, new: list[str], note: str
) -> None:
    lines[index:index] = new
    tree.stage(rel, "\n".join(lines), note)


def insert_sorted_string(
    tree: Tree, rel: str, variable: str, value: str, prefix: str
) -> None:
    """Insert the string ``value`` into the list literal assigned to ``variable``.

    The new line goes before the first element with ``prefix`` that sorts
    after ``value`` (or after the last such element).
    """
    text = tree.read(rel)
    node = assigned_value(parse_python(text, rel), variable)
    if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        raise AnchorError(rel, f"the list assigned to '{variable}'")
    elements = [
        e for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
    ]
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
    _insert_line(
        tree,
        rel,
        lines,
        index,
        [f"{indent}{quote}{value}{quote},"],
        f"add {value!r} to {variable}",
    )


def insert_string_after(
    tree: Tree, rel: str, variable: str, value: str, anchor: str
) -> None:
    """Insert the string ``value`` right after the element ``anchor`` of the list ``variable``."""
    text = tree.read(rel)
    node = assigned_value(parse_python(text, rel), variable)
    if not isinstance(node, (ast.List, ast.Tuple)):
        raise AnchorError(rel, f"the list assigned to '{variable}'")
    strings = [
        e for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
    ]
    if any(e.value == value for e in strings):
        tree.present(rel)
        return
    ref = next((e for e in strings if e.value == anchor), None)
    lines = text.split("\n")
    if ref is None or not lines[ref.lineno - 1].strip().startswith(("'", '"')):
        raise AnchorError(rel, f"the element {anchor!r} (one per line) of '{variable}'")
    line = lines[ref.lineno - 1]
    indent = line[: len(line) - len(line.lstrip())]
    quote = line.strip()[0]
    _insert_line(
        tree,
        rel,
        lines,
        ref.end_lineno,
        [f"{indent}{quote}{value}{quote},"],
        f"add {value!r} to {variable}",
    )


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
    lines = tree.read(rel).split("\n")
    elements = [(ast.unparse(e), e) for e in list_node.elts]
    if any(name == expr for name, _ in elements):
        tree.present(rel)
        return
    later = [e for name, e in elements if name > expr] if keep_sorted else []
    ref = later[0] if later else elements[-1][1]
    if lines[ref.lineno - 1][: ref.col_offset].strip():
        raise AnchorError(rel, f"{anchor} with one element per line")
    index = ref.lineno - 1 if later else ref.end_lineno
    new = f"{' ' * ref.col_offset}{expr},{'  # ' + comment if comment else ''}"
    _insert_line(tree, rel, lines, index, [new], f"add {expr} to {anchor}")


def insert_after_element(
    tree: Tree,
    rel: str,
    variable: str,
    is_anchor,
    anchor: str,
    is_ours,
    what: str,
    entry: str,
) -> None:
    """Insert ``entry`` (text of one or more elements, each followed by a comma)
    after the element of the list ``variable`` that ``is_anchor`` picks."""
    text = tree.read(rel)
    if entry in text:
        tree.present(rel)
        return
    node = assigned_value(parse_python(text, rel), variable)
    elements = node.elts if isinstance(node, ast.List) else []
    if any(is_ours(e) for e in elements):
        raise outdated(rel, what)
    ref = next((e for e in elements if is_anchor(e)), None)
    lines = text.split("\n")
    if ref is None:
        raise AnchorError(rel, anchor)
    if not lines[ref.end_lineno - 1][ref.end_col_offset :].lstrip().startswith(","):
        raise AnchorError(rel, f"a ',' right after {anchor}")
    _insert_line(
        tree,
        rel,
        lines,
        ref.end_lineno,
        entry.split("\n"),
        f"add {what} after {anchor}",
    )


def insert_dict_entries(
    tree: Tree,
    rel: str,
    node: ast.Dict | None,
    anchor_key: str,
    anchor: str,
    entries: list[tuple[str, str]],
) -> None:
    """Insert ``key: value`` lines after the entry whose key reads ``anchor_key``."""
    if not isinstance(node, ast.Dict):
        raise AnchorError(rel, anchor)
    keys = [ast.unparse(k) if k is not None else "" for k in node.keys]
    wanted = [
        (k, v)
        for k, v in entries
        if ast.unparse(ast.parse(k, mode="eval").body) not in keys
    ]
    if not wanted:
        tree.present(rel)
        return
    if len(wanted) != len(entries):
        raise outdated(rel, "some of the entries " + ", ".join(k for k, _ in entries))
    anchor_key = ast.unparse(ast.parse(anchor_key, mode="eval").body)
    if anchor_key not in keys:
        raise AnchorError(rel, f"the entry {anchor_key} of {anchor}")
    i = keys.index(anchor_key)
    lines = tree.read(rel).split("\n")
    key_node, value_node = node.keys[i], node.values[i]
    if (
        not lines[value_node.end_lineno - 1][value_node.end_col_offset :]
        .lstrip()
        .startswith(",")
    ):
        raise AnchorError(rel, f"a ',' after the entry {anchor_key} of {anchor}")
    indent = " " * key_node.col_offset
    new = [f"{indent}{k}: {v}," for k, v in wanted]
    _insert_line(
        tree,
        rel,
        lines,
        value_node.end_lineno,
        new,
        f"add {', '.join(k for k, _ in wanted)} to {anchor}",
    )
