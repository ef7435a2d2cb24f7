#!/usr/bin/env python3
"""Apply the ``torch.nn.functional.correlation`` patch to a PyTorch checkout.

Usage::

    python tools/apply_patch.py PYTORCH_ROOT                  # apply
    python tools/apply_patch.py PYTORCH_ROOT --check          # report only
    python tools/apply_patch.py PYTORCH_ROOT --emit-patch correlation.patch

The patch is built from the files of this repository (``--source-root``, by
default the directory above ``tools/``); what goes where is the package
``tools/correlation_patch/`` (``placements.py``: one function per upstream
file; ``pyedit.py``/``textedit.py``: the edit kinds; ``sources.py``: the
inputs and their ``[... begin]``/``[... end]`` blocks; ``model.py``: the tree
staged in memory). ``patch/README.md`` lists every placement.

Guarantees:

* All edits are computed in memory before anything is written. A missing
  source file, or a target file that no longer holds the anchor an edit needs,
  stops the run with an error naming the file and the anchor, and nothing is
  written.
* The patch only adds: a file it adds must not exist in the target (an
  upstream file of the same name, or any other content, is an error), and a
  file it modifies keeps every upstream line, in order.
* Idempotent: an edit whose text is already in place is skipped, so a second
  run changes nothing. A target holding a *different* version of our text
  (from an older run) is an error; restore that file (``git checkout --
  FILE``) and rerun.
* Inserted Python blocks are checked: every global name they use must be
  defined in the target module (missing ``typing`` names get their own
  ``from typing import`` line), and every modified Python file must compile.

Exit status: 0 = applied, or nothing to do; 1 = ``--check`` found pending
edits (it never writes); 2 = error, nothing written. ``--emit-patch FILE``
writes the pending change as one ``git diff``-style patch (``a/``/``b/``
prefixes, new files against ``/dev/null``; ``git apply`` accepts it) and does
not touch the tree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from correlation_patch.model import PatchError, report, unified_diff, write_changes
from correlation_patch.placements import plan

REPO = Path(__file__).resolve().parents[1]
EXIT_OK, EXIT_PENDING, EXIT_ERROR = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Apply the torch.nn.functional.correlation patch to a PyTorch checkout.",
        epilog="Exit status: 0 applied or nothing to do; 1 --check found pending edits; 2 error.",
    )
    parser.add_argument(
        "pytorch_root", type=Path, help="root of the PyTorch source checkout"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if edits are pending",
    )
    parser.add_argument(
        "--emit-patch",
        type=Path,
        metavar="FILE",
        help="write the change as a unified patch instead of applying it",
    )
    parser.add_argument(
        "--source-root",
        type=Path,
        default=REPO,
        help="this repository (default: %(default)s)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only errors and the summary"
    )
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
        lines.append(
            f"apply_patch: wrote {len(changes)} file diffs to {args.emit_patch}"
        )
    elif args.check:
        lines.append(
            f"apply_patch: {len(changes)} files would change"
            if changes
            else "apply_patch: nothing to do (already applied)"
        )
    elif changes:
        try:
            write_changes(args.pytorch_root.resolve(), changes)
        except PatchError as e:
            print("\n".join(lines), file=sys.stderr)
            print(f"apply_patch: error: {e}", file=sys.stderr)
            return EXIT_ERROR
        lines.append(
            f"apply_patch: changed {len(changes)} files under {args.pytorch_root}"
        )
    else:
        lines.append("apply_patch: nothing to do (already applied)")
    print("\n".join(lines))
    return EXIT_PENDING if args.check and changes else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
