"""The target tree staged in memory, the errors that stop a run, and output.

Every edit reads and stages files through one ``Tree``; nothing is written
until ``write_changes`` runs, after all edits were computed. ``check_additive``
enforces that the patch only adds: a new file must not exist upstream, and a
modified file must keep every upstream line, in order.
"""

from __future__ import annotations

import difflib
import os
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


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
            "anchor in tools/correlation_patch/placements.py. Nothing was written."
        )


def outdated(path: str, what: str) -> PatchError:
    return PatchError(
        f"{path}: already contains {what}, but not the text this patch would "
        f"insert (an older apply?). Restore the file (git checkout -- {path}) "
        "and rerun. Nothing was written."
    )


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


def removed_lines(old: str, new: str) -> list[str]:
    """Lines of ``old`` that ``new`` does not keep (in order); empty if it only adds."""
    remaining = iter(new.split("\n"))
    if all(
        any(line == candidate for candidate in remaining) for line in old.split("\n")
    ):
        return []
    matcher = difflib.SequenceMatcher(
        None, old.split("\n"), new.split("\n"), autojunk=False
    )
    return [
        line
        for tag, i1, i2, _, _ in matcher.get_opcodes()
        if tag in ("replace", "delete")
        for line in old.split("\n")[i1:i2]
    ]


def check_additive(tree: Tree) -> None:
    """A patch that upstream can merge only adds: no upstream line is removed."""
    for rel, old, new in tree.changes():
        if old is None:
            continue
        gone = removed_lines(old, new)
        if gone:
            raise PatchError(
                f"{rel}: the patch would remove or change upstream lines, e.g. "
                f"{gone[0]!r} ({len(gone)} lines); it may only add. Nothing was written."
            )


def copy_file(tree: Tree, rel: str, text: str) -> None:
    """A file the patch adds: created, or already identical; any other content is an error."""
    old = tree.read(rel, required=False)
    if old == text:
        tree.present(rel)
        return
    if old is not None or rel in tree.staged:
        raise PatchError(
            f"{rel}: exists with different content. The patch only adds files "
            "upstream does not have: if this is an upstream file of the same name, "
            "rename ours; if it is an older copy of ours, remove it (git clean) and "
            "rerun. Nothing was written."
        )
    tree.stage(rel, text, "create")


def unified_diff(rel: str, old: str | None, new: str) -> str:
    a = old.splitlines(keepends=True) if old is not None else []
    b = new.splitlines(keepends=True)
    out = [f"diff --git a/{rel} b/{rel}\n"]
    if old is None:
        out.append("new file mode 100644\n")
    for line in difflib.unified_diff(
        a, b, "/dev/null" if old is None else f"a/{rel}", f"b/{rel}"
    ):
        out.append(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
        )
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
        raise PatchError(
            f"writing {current} failed ({e}); restored the files already written"
        ) from None


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
