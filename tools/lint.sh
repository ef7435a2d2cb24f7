#!/usr/bin/env bash
# Lints the files whose text lands in PyTorch the way upstream's lintrunner
# does, and exits non-zero on any finding (printing every one):
#
#   RUFF        ruff check with the [tool.ruff] rules of pyproject.toml (PyTorch's
#               rule set, py310 target: `X | None`, not Optional/Union)
#   PYFMT       ruff format --check (upstream formats Python with ruff format)
#   CLANGFORMAT clang-format --dry-run with .clang-format (PyTorch's settings)
#   TESTOWNERS  test/test_*.py carry a `# Owner(s): ["module: ..."]` line
#   NOQA, TYPEIGNORE, INCLUDE, NEWLINE, SPACES, TABS: upstream's grep linters
#
# Files: torch_correlation/*.py, test/*.py, patch/*.py, tools/*.py and the C++
# of aten_native/, csrc/ and aten_functorch/. The linters are pinned in
# requirements.txt (ruff, clang-format from PyPI).
#
#   tools/lint.sh          check
#   tools/lint.sh --fix    apply ruff's fixes, ruff format and clang-format -i,
#                          then check what is left
#
# Environment: PYTHON (default: .venv/bin/python if present, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  PY=python3
fi
fix=0
if [ "${1:-}" = "--fix" ]; then
  fix=1
elif [ $# -gt 0 ]; then
  echo "usage: tools/lint.sh [--fix]" >&2
  exit 2
fi

# The clang-format wheel installs its binary next to the interpreter.
CLANG_FORMAT="$(dirname "$PY")/clang-format"
[ -x "$CLANG_FORMAT" ] || CLANG_FORMAT="$(command -v clang-format || true)"
if ! "$PY" -m ruff --version > /dev/null 2>&1 || [ -z "$CLANG_FORMAT" ]; then
  echo "tools/lint.sh: ruff and clang-format are needed: $PY -m pip install -r requirements.txt" >&2
  exit 2
fi

shopt -s nullglob
py_files=(torch_correlation/*.py test/*.py patch/*.py tools/*.py tools/*/*.py)
cpp_files=()
for dir in aten_native csrc aten_functorch; do
  [ -d "$dir" ] || continue
  while IFS= read -r f; do cpp_files+=("$f"); done < <(
    find "$dir" -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | sort)
done
test_files=(test/test_*.py)

failed=()
report() {  # report LINTER: records a failure when the previous command failed
  failed+=("$1")
}

if [ "$fix" = 1 ]; then
  "$PY" -m ruff check --fix -q "${py_files[@]}" > /dev/null
  "$PY" -m ruff format -q "${py_files[@]}"
  "$CLANG_FORMAT" -i --style=file "${cpp_files[@]}"
fi

echo "== RUFF (${#py_files[@]} files)"
"$PY" -m ruff check --no-cache --output-format=concise "${py_files[@]}" || report RUFF

echo "== PYFMT"
"$PY" -m ruff format --no-cache --check --output-format=concise "${py_files[@]}" || report PYFMT

echo "== CLANGFORMAT (${#cpp_files[@]} files)"
# One line per file that clang-format would change, with the count of
# changed places, and the first few as clang-format prints them.
cf_failed=0
for f in "${cpp_files[@]}"; do
  out="$("$CLANG_FORMAT" --dry-run --style=file "$f" 2>&1)"
  if [ -n "$out" ]; then
    cf_failed=1
    echo "$f: clang-format would change $(grep -c "warning:" <<< "$out") places"
    grep -A2 'warning:' <<< "$out" | head -12
  fi
done
[ "$cf_failed" = 0 ] || report CLANGFORMAT

echo "== TESTOWNERS"
owners_failed=0
for f in "${test_files[@]}"; do
  line="$(grep -m1 -n '^# Owner(s): ' "$f")"
  if [ -z "$line" ]; then
    echo "$f:1: no '# Owner(s): [\"module: ...\"]' line"
    owners_failed=1
  elif ! grep -Eq '^[0-9]+:# Owner\(s\): \[("(module|oncall): [^"]+"(, )?)+\]$' <<< "$line"; then
    echo "$f:${line%%:*}: owners must be a JSON list of \"module: ...\" or \"oncall: ...\" labels"
    owners_failed=1
  fi
done
[ "$owners_failed" = 0 ] || report TESTOWNERS

grep_lint() {  # grep_lint NAME MESSAGE PATTERN FILES...: fails on any match
  local name="$1" message="$2" pattern="$3"
  shift 3
  [ $# -gt 0 ] || return 0
  local hits
  hits="$(grep -nE -- "$pattern" "$@")"
  if [ -n "$hits" ]; then
    echo "== $name: $message"
    sed 's/^/  /' <<< "$hits"
    report "$name"
  fi
}
grep_lint NOQA "unqualified noqa (write noqa: CODE)" '# noqa([^:]|$)' "${py_files[@]}"
grep_lint TYPEIGNORE "unqualified type: ignore (write type: ignore[code])" \
  '# type:[[:space:]]*ignore([^[]|$)' "${py_files[@]}"
grep_lint INCLUDE 'quoted #include (upstream writes #include <...>)' '^#include "' "${cpp_files[@]}"
grep_lint SPACES "trailing spaces" '[[:blank:]]$' "${cpp_files[@]}"
grep_lint TABS "tabs" $'\t' "${cpp_files[@]}"
for f in "${cpp_files[@]}"; do
  # A file ends with exactly one newline.
  if [ -s "$f" ] && { [ -n "$(tail -c1 "$f")" ] || [ -z "$(tail -c2 "$f" | tr -d '\n')" ]; }; then
    echo "== NEWLINE: $f does not end with exactly one newline"
    report NEWLINE
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "tools/lint.sh: FAILED: ${failed[*]} (tools/lint.sh --fix applies the formatters)"
  exit 1
fi
echo "tools/lint.sh: clean (${#py_files[@]} Python, ${#cpp_files[@]} C++ files)"
