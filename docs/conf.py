"""Sphinx configuration for the ``torch.nn.functional.correlation`` docs.

Build (warnings are errors) and run every example with ``tools/build_docs.sh``.

The API page documents ``torch.nn.functional.correlation``; importing
``torch_correlation`` puts it there. When the compiled extension is missing
the HTML still builds: the docstring that ``torch_correlation/functional.py``
attaches to the binding is read from that file and put on a stand-in function
installed under the same name, so it renders; the doctest builder, which
calls the op, then fails, as it should.
"""

import ast
import os
import sys

import torch
import torch.nn.functional as F

DOCS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(DOCS)
sys.path.insert(0, REPO)

try:
    import torch_correlation  # noqa: F401  (installs torch.nn.functional.correlation)

    HAVE_EXTENSION = True
except ImportError as exc:
    HAVE_EXTENSION = False
    print(f"docs/conf.py: torch_correlation not importable ({exc}); rendering the docstring only", file=sys.stderr)
    if not hasattr(F, "correlation"):
        with open(os.path.join(REPO, "torch_correlation", "functional.py")) as f:
            tree = ast.parse(f.read())
        (docstring,) = [
            node.value.args[1].value
            for node in tree.body
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["correlation"]
        ]

        def correlation(*args, **kwargs):
            raise RuntimeError("torch_correlation is not built")

        correlation.__doc__ = docstring
        correlation.__module__ = "torch.nn.functional"
        F.correlation = correlation

project = "torch.nn.functional.correlation"
author = "the torch_correlation contributors"
copyright = "the torch_correlation contributors"
release = str(torch.__version__)

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
]

# PyTorch docstrings use Google-style sections ("Args:", "Returns:") and a
# "Shape:" block; napoleon renders the former, the latter is plain reST.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_typehints = "none"
autodoc_member_order = "bysource"

# The docstring example uses ``torch`` and ``F``, as every example in
# torch/nn/functional.py does.
doctest_global_setup = """
import torch
import torch.nn.functional as F
import torch_correlation
torch.manual_seed(0)
"""
import doctest as _doctest  # noqa: E402

doctest_default_flags = _doctest.ELLIPSIS | _doctest.NORMALIZE_WHITESPACE | _doctest.DONT_ACCEPT_TRUE_FOR_1

# No network at build time: intersphinx only resolves against inventories that
# are present locally (none by default), so references to torch stay plain.
intersphinx_mapping = {}

templates_path = []
exclude_patterns = ["_build", "benchmarks/*.md"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_theme_options = {"description": "Local correlation (cost volumes) for PyTorch", "page_width": "1120px"}
html_show_sourcelink = False
nitpicky = False
suppress_warnings = []


# ---------------------------------------------------------------------------
# ``.. benchmark-results::``: shows docs/benchmarks/bench_cpu.png and the
# tables of bench_cpu.md / bench_cuda.md when the benchmark helper has written
# them, and a short note otherwise. The Markdown files are read here (pipe
# tables become reST tables, other lines become paragraphs) so no Markdown
# parser is needed.
# ---------------------------------------------------------------------------
from docutils import nodes  # noqa: E402
from docutils.parsers.rst import Directive  # noqa: E402

BENCH_DIR = os.path.join(DOCS, "benchmarks")


def _md_table(rows):
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    header, body = cells[0], [r for r in cells[2:]]
    ncols = len(header)
    table = nodes.table(classes=["benchmark-table"])
    group = nodes.tgroup(cols=ncols)
    table += group
    for _ in range(ncols):
        group += nodes.colspec(colwidth=1)

    def make_row(values):
        row = nodes.row()
        for value in (values + [""] * ncols)[:ncols]:
            entry = nodes.entry()
            entry += nodes.paragraph(text=value.replace("`", "").replace("**", ""))
            row += entry
        return row

    head = nodes.thead()
    head += make_row(header)
    group += head
    tbody = nodes.tbody()
    for r in body:
        tbody += make_row(r)
    group += tbody
    return table


def _md_nodes(path):
    out = []
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    i = 0
    paragraph = []

    def flush():
        if paragraph:
            out.append(nodes.paragraph(text=" ".join(paragraph).replace("`", "").replace("**", "")))
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: "):
            flush()
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i])
                i += 1
            out.append(_md_table(rows))
            continue
        if stripped.startswith("#"):
            flush()
            out.append(nodes.rubric(text=stripped.lstrip("#").strip()))
        elif not stripped:
            flush()
        else:
            paragraph.append(stripped)
        i += 1
    flush()
    return out


class BenchmarkResults(Directive):
    has_content = False

    def run(self):
        result = []
        png = os.path.join(BENCH_DIR, "bench_cpu.png")
        found = False
        if os.path.exists(png):
            found = True
            self.state.document.settings.record_dependencies.add(png)
            result.append(
                nodes.image(uri="benchmarks/bench_cpu.png", alt="CPU benchmark of F.correlation and its alternatives")
            )
        for name, title in (("bench_cpu.md", "CPU"), ("bench_cuda.md", "CUDA")):
            path = os.path.join(BENCH_DIR, name)
            if os.path.exists(path):
                found = True
                self.state.document.settings.record_dependencies.add(path)
                result.append(nodes.rubric(text=f"{title} results (docs/benchmarks/{name})"))
                result.extend(_md_nodes(path))
        if not found:
            result.append(
                nodes.paragraph(
                    text="No benchmark results were present when these pages were built: "
                    "run the benchmark (it writes docs/benchmarks/bench_cpu.md and bench_cpu.png) "
                    "and rebuild."
                )
            )
        return result


def setup(app):
    app.add_directive("benchmark-results", BenchmarkResults)
    return {"parallel_read_safe": True}
