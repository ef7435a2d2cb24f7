#!/usr/bin/env bash
# Build the Sphinx docs with warnings as errors and run every example in them.
#
#   tools/build_docs.sh [--figures]
#
# Needs the compiled preview package (torch_correlation/_C*.so, built in place
# or installed) and sphinx (pip install sphinx; matplotlib too for --figures).
# Steps, any failure fails the script:
#   0. (--figures) regenerate docs/_static/*.png with tools/make_figures.py
#   1. HTML:    sphinx-build -W --keep-going -b html docs docs/_build/html
#   2. doctest: sphinx-build -W --keep-going -b doctest docs docs/_build/doctest
#               (the examples of docs/*.rst, e.g. every model recipe)
#   3. the ">>>" example of the F.correlation docstring, with Python's doctest
#      (Sphinx renders it as a literal block, so step 2 does not run it)
# PYTHON selects the interpreter (default: /work/venv/bin/python if present,
# else python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x /work/venv/bin/python ]]; then PYTHON=/work/venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

"$PYTHON" -c "import sphinx" 2>/dev/null || {
  echo "build_docs: sphinx is not installed for $PYTHON (pip install sphinx)" >&2
  exit 1
}
"$PYTHON" -c "import torch_correlation" || {
  echo "build_docs: torch_correlation does not import; build the extension first" >&2
  exit 1
}

if [[ "${1:-}" == "--figures" ]]; then
  echo "== figures"
  "$PYTHON" tools/make_figures.py
fi

echo "== sphinx html (warnings are errors)"
"$PYTHON" -m sphinx -W --keep-going -q -b html docs docs/_build/html

echo "== sphinx doctest (docs/*.rst examples)"
"$PYTHON" -m sphinx -W --keep-going -q -b doctest docs docs/_build/doctest
grep -E "^ +[0-9]+ (tests|failures)" docs/_build/doctest/output.txt || true

echo "== docstring examples (torch_correlation/functional.py)"
"$PYTHON" - <<'EOF'
import doctest
import sys

import torch
import torch.nn.functional as F

import torch_correlation
import torch_correlation.functional as module

torch.manual_seed(0)
flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
result = doctest.testmod(module, extraglobs={"torch": torch, "F": F}, optionflags=flags, verbose=False)
print(f"docstring doctest: {result.attempted} examples, {result.failed} failed")
if result.failed or result.attempted == 0:
    sys.exit(1)
EOF

echo "build_docs: OK (html in docs/_build/html)"
