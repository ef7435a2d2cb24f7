"""Edit kinds for non-Python targets: YAML entries, C++ blocks and macro lists,
Markdown/rst lists. Each only inserts lines next to an anchor it finds by text.
"""

from __future__ import annotations

import re

from .model import AnchorError, Tree, outdated


def find_entry_end(lines: list[str], start: int) -> int:
    """Index of the line after a YAML entry starting at ``start``."""
    end = start + 1
    while (
        end < len(lines)
        and lines[end].strip()
        and not lines[end].startswith(("- ", "#"))
    ):
        end += 1
    return end


def edit_yaml(
    tree: Tree, rel: str, key: str, anchor_op: str, entries: tuple[str, list[str]]
) -> None:
    body, names = entries
    text = tree.read(rel)
    if "\n" + body + "\n" in "\n" + text:
        tree.present(rel)
        return
    for name in names:
        if re.search(rf"^- {key}: {re.escape(name)}\(", text, re.MULTILINE):
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


def edit_cpp_block_before(
    tree: Tree, rel: str, block: str, anchor: re.Pattern, anchor_text: str
) -> None:
    """Insert a C++ ``block`` before the last line matching ``anchor`` (a namespace end)."""
    text = tree.read(rel)
    if block in text:
        tree.present(rel)
        return
    ours = set(re.findall(r"\b(\w*correlation\w*)\s*\(", block))
    for name in sorted(ours):
        if re.search(rf"\b{re.escape(name)}\s*\(", text):
            raise outdated(rel, f"'{name}(...)'")
    lines = text.split("\n")
    ends = [i for i, line in enumerate(lines) if anchor.match(line)]
    if not ends:
        raise AnchorError(rel, anchor_text)
    index = ends[-1]
    new = block.split("\n") + [""]
    if index > 0 and lines[index - 1].strip():
        new.insert(0, "")
    lines[index:index] = new
    tree.stage(rel, "\n".join(lines), f"insert before '{anchor_text}'")


def add_macro_entry(tree: Tree, rel: str, macro: str, after: str, entry: str) -> None:
    """Add ``entry`` after the entry ``after`` of a ``#define macro(_) \\`` list, aligned."""
    lines = tree.read(rel).split("\n")
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if re.match(rf"#define {re.escape(macro)}\(", line)
        ),
        None,
    )
    if start is None:
        raise AnchorError(rel, f"'#define {macro}(...)'")
    end = start
    while end + 1 < len(lines) and lines[end].rstrip().endswith("\\"):
        end += 1
    body = [line.rstrip().rstrip("\\").strip() for line in lines[start + 1 : end + 1]]
    if entry in body:
        tree.present(rel)
        return
    if after not in body:
        raise AnchorError(rel, f"the entry '{after}' of {macro}")
    index = start + 1 + body.index(after)
    anchor_line = lines[index]
    indent = anchor_line[: len(anchor_line) - len(anchor_line.lstrip())]
    if not anchor_line.rstrip().endswith("\\"):
        raise AnchorError(
            rel, f"an entry of {macro} after '{after}' (it must not end the list)"
        )
    new = (indent + entry).ljust(len(anchor_line.rstrip()) - 1) + "\\"
    lines.insert(index + 1, new)
    tree.stage(rel, "\n".join(lines), f"add {entry} to {macro}")


def add_line_in_block(
    tree: Tree, rel: str, block_start: str, after: str, line: str
) -> None:
    """Add ``line`` after the line ``after`` inside the brace block opened by the
    line ``block_start`` (e.g. a ``TORCH_LIBRARY_IMPL`` list), with its indent."""
    lines = tree.read(rel).split("\n")
    start = next(
        (i for i, text in enumerate(lines) if text.strip() == block_start), None
    )
    if start is None:
        raise AnchorError(rel, f"the line '{block_start}'")
    end = next(
        (j for j in range(start + 1, len(lines)) if lines[j].startswith("}")),
        len(lines),
    )
    body = [text.strip() for text in lines[start + 1 : end]]
    if line in body:
        tree.present(rel)
        return
    if after not in body:
        raise AnchorError(rel, f"the line '{after}' in '{block_start}'")
    index = start + 1 + body.index(after)
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    lines.insert(index + 1, indent + line)
    tree.stage(rel, "\n".join(lines), f"add {line} to '{block_start}'")


def add_markdown_list_item(
    tree: Tree, rel: str, heading: str, after: str, item: str
) -> None:
    """Add ``item`` after ``after`` in the list under the Markdown heading ``heading``."""
    lines = tree.read(rel).split("\n")
    starts = [
        i
        for i, line in enumerate(lines)
        if line.lstrip("#").strip() == heading and line.startswith("#")
    ]
    if not starts:
        raise AnchorError(rel, f"the heading '{heading}'")
    start = starts[0]
    end = next(
        (j for j in range(start + 1, len(lines)) if lines[j].startswith("#")),
        len(lines),
    )
    section = [line.strip() for line in lines[start:end]]
    if item in section:
        tree.present(rel)
        return
    if after not in section:
        raise AnchorError(rel, f"the item '{after}' under '{heading}'")
    lines.insert(start + section.index(after) + 1, item)
    tree.stage(rel, "\n".join(lines), f"list {item} under '{heading}'")


def docs_file(tree: Tree, base: str) -> str:
    for ext in (".md", ".rst"):
        if tree.exists(base + ext):
            return base + ext
    raise AnchorError(
        f"{base}.md", f"the file itself (neither {base}.md nor {base}.rst exists)"
    )


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
    end = next(
        (j for j in range(start + 2, len(lines)) if _is_heading(lines, j)), len(lines)
    )
    auto = next(
        (j for j in range(start, end) if lines[j].strip() == ".. autosummary::"), None
    )
    items: list[int] = []
    if auto is not None:
        j = auto + 1
        while j < end and (not lines[j].strip() or lines[j].strip().startswith(":")):
            j += 1
        while (
            j < end
            and lines[j].startswith(" ")
            and lines[j].strip()
            and not lines[j].strip().startswith(":")
        ):
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
    hits = [
        (i, m.group(2)) for i, line in enumerate(lines) if (m := pattern.match(line))
    ]
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
