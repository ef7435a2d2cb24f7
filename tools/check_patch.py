#!/usr/bin/env python3
"""CI check of the upstream patch against the files of the installed torch wheel.

Usage::

    python tools/check_patch.py [--keep DIR] [--source-root DIR] [-j N]

The wheel ships ``torch/**/*.py``, ``torch/include`` and, under
``torchgen/packaged/``, ``native_functions.yaml``, ``tags.yaml``,
``derivatives.yaml`` and the codegen templates. This script builds a fake
PyTorch root from them (plus the stand-ins in ``tools/check_patch_stubs/`` for
the few anchor files the wheel lacks, each reported as STUB), then:

1. applies the patch (``tools/apply_patch.py``) and checks that no file it
   adds exists upstream (``tools/upstream_paths.txt`` and the source paths
   compiled into the wheel's libtorch);
2. applies it again and checks that nothing changes, and that ``--check``
   reports nothing pending;
3. emits the patch with ``--emit-patch`` for a pristine copy, applies it with
   ``git apply`` and checks the result equals step 1's tree;
4. applies it to copies whose anchors were removed (a file that "moved on")
   and checks that it fails, names the file and the anchor, and writes nothing;
5. runs the full ATen codegen (``python -m torchgen.gen ... --per-operator-headers
   --generate headers sources``) and the autograd codegen (``gen_autograd`` and
   ``gen_autograd_python``) over the complete patched yaml files, and checks
   that our operators reach the outputs (schema registration, per-operator
   headers, CPU/CUDA registration, autograd nodes, the ``torch._C._nn``
   binding), and that every helper the derivative formulas call is declared
   in the patched ``FunctionsManual.h``;
6. imports the patched Python files for real (``tools/check_patch_child.py``
   with an overlay ``torch`` package first on ``sys.path``): overrides
   coverage, ``nn.Correlation``, the decomposition against
   ``test/correlation_reference.py``, the decomposition lists, Inductor
   fallbacks, ``trace_rules``, ``flop_registry``, the OpInfo and ModuleInfo.

Sources another branch adds (``aten_functorch/``, ``torch_correlation/_flop_counter.py``,
``patch/moduleinfo.py``) are taken from ``tools/check_patch_stubs/api_placeholders/``
while missing from ``--source-root`` (reported as PLACEHOLDER).

Prints a summary; exits 1 if any step failed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import mmap
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APPLY = REPO / "tools" / "apply_patch.py"
sys.path.insert(0, str(REPO / "tools"))
import apply_patch as ap
from correlation_patch import sources


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"check_patch: the '{name}' package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


# Files copied from the wheel: (path in the wheel's site-packages, path in the fake root).
WHEEL_FILES = [
    ("torch/nn/functional.py", "torch/nn/functional.py"),
    ("torch/nn/__init__.py", "torch/nn/__init__.py"),
    ("torch/nn/modules/__init__.py", "torch/nn/modules/__init__.py"),
    ("torch/overrides.py", "torch/overrides.py"),
    ("torch/utils/flop_counter.py", "torch/utils/flop_counter.py"),
    ("torch/_subclasses/fake_tensor.py", "torch/_subclasses/fake_tensor.py"),
    (
        "torch/testing/_internal/common_modules.py",
        "torch/testing/_internal/common_modules.py",
    ),
    ("torch/testing/_internal/common_mps.py", "torch/testing/_internal/common_mps.py"),
    ("torch/include/ATen/autocast_mode.h", "aten/src/ATen/autocast_mode.h"),
    ("torch/_decomp/__init__.py", "torch/_decomp/__init__.py"),
    ("torch/_decomp/decompositions.py", "torch/_decomp/decompositions.py"),
    ("torch/_inductor/decomposition.py", "torch/_inductor/decomposition.py"),
    ("torch/_inductor/lowering.py", "torch/_inductor/lowering.py"),
    ("torch/_dynamo/trace_rules.py", "torch/_dynamo/trace_rules.py"),
    (
        "torch/testing/_internal/common_methods_invocations.py",
        "torch/testing/_internal/common_methods_invocations.py",
    ),
    (
        "torch/include/torch/csrc/autograd/FunctionsManual.h",
        "torch/csrc/autograd/FunctionsManual.h",
    ),
    (
        "torchgen/packaged/ATen/native/native_functions.yaml",
        "aten/src/ATen/native/native_functions.yaml",
    ),
    ("torchgen/packaged/ATen/native/tags.yaml", "aten/src/ATen/native/tags.yaml"),
    ("torchgen/packaged/ATen/templates", "aten/src/ATen/templates"),
    ("torchgen/packaged/autograd/derivatives.yaml", "tools/autograd/derivatives.yaml"),
    ("torchgen/packaged/autograd/deprecated.yaml", "tools/autograd/deprecated.yaml"),
    ("torchgen/packaged/autograd/templates", "tools/autograd/templates"),
]

# Python files of the patched tree that the child interpreter imports.
OVERLAY_FILES = [
    "torch/nn/functional.py",
    "torch/nn/__init__.py",
    "torch/nn/modules/__init__.py",
    "torch/nn/modules/correlation.py",
    "torch/overrides.py",
    "torch/utils/flop_counter.py",
    "torch/testing/_internal/common_modules.py",
    "torch/_decomp/__init__.py",
    "torch/_decomp/decompositions.py",
    "torch/_inductor/decomposition.py",
    "torch/_inductor/lowering.py",
    "torch/_dynamo/trace_rules.py",
    "torch/testing/_internal/common_methods_invocations.py",
]

# Stubs for anchor files the wheel does not ship; they hold upstream's anchors.
# Stand-ins for the anchor files the wheel does not ship, in upstream's layout
# (each holds only the anchors the patch uses): tools/check_patch_stubs/<path>.
STUBS = REPO / "tools" / "check_patch_stubs"
# Minimal versions of sources another branch adds; used only where the real
# file is missing from --source-root (reported as PLACEHOLDER).
PLACEHOLDERS = STUBS / "api_placeholders"


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


class Results:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float, str]] = []

    def add(self, name: str, ok: bool | None, seconds: float, detail: str = "") -> None:
        status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append((status, name, seconds, detail))
        timing = f" ({seconds:.1f} s)" if seconds else ""
        print(
            f"[{status}] {name}{timing}" + (f"\n{indent(detail)}" if detail else ""),
            flush=True,
        )

    @property
    def failed(self) -> bool:
        return any(row[0] == "FAIL" for row in self.rows)


def indent(text: str, prefix: str = "       ") -> str:
    return "\n".join(prefix + line for line in text.rstrip().split("\n"))


def tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            out[path.relative_to(root).as_posix()] = hashlib.sha256(
                path.read_bytes()
            ).hexdigest()
    return out


def run(
    cmd: list[str], cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def apply(root: Path, source_root: Path, *extra: str) -> subprocess.CompletedProcess:
    return run(
        [
            sys.executable,
            str(APPLY),
            str(root),
            "--source-root",
            str(source_root),
            *extra,
        ]
    )


def output_of(proc: subprocess.CompletedProcess, limit: int = 4000) -> str:
    text = (proc.stdout + proc.stderr).strip()
    return text if len(text) <= limit else "...\n" + text[-limit:]


# --------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------


def build_fake_root(root: Path) -> str:
    site = package_dir("torch").parent
    lines = []
    for here, there in WHEEL_FILES:
        src = site / here
        dst = root / there
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
        lines.append(f"wheel    {there}  <- {here}")
    (root / "aten/src/ATen/functorch").mkdir(parents=True)
    for path in sorted(
        p for p in STUBS.rglob("*") if p.is_file() and PLACEHOLDERS not in p.parents
    ):
        rel = path.relative_to(STUBS).as_posix()
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, root / rel)
        lines.append(
            f"STUB     {rel}  (not in the wheel; tools/check_patch_stubs/{rel})"
        )
    return "\n".join(lines)


MOVED_ON = [
    # (file, regex to break, replacement, text the error must contain)
    (
        "aten/src/ATen/native/native_functions.yaml",
        r"^- func: grid_sampler_3d_backward\(",
        "- func: grid_sampler_3d_backward_renamed(",
        "grid_sampler_3d_backward",
    ),
    (
        "torch/nn/functional.py",
        r"^def grid_sample\(",
        "def grid_sample_renamed(",
        "def grid_sample",
    ),
    (
        "aten/src/ATen/autocast_mode.h",
        r"^\s*_\(conv2d\)\s*\\\n",
        "",
        "_(conv2d)",
    ),
]


def step_moved_on(pristine: Path, work: Path, source_root: Path) -> tuple[bool, str]:
    notes = []
    ok = True
    for rel, pattern, replacement, expected in MOVED_ON:
        case = work / f"moved_on_{len(notes)}"
        shutil.copytree(pristine, case, symlinks=True)
        path = case / rel
        text = path.read_text(encoding="utf-8")
        broken, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if not count:
            notes.append(
                f"{rel}: could not break the anchor (pattern {pattern!r} not found)"
            )
            ok = False
            continue
        path.write_text(broken, encoding="utf-8")
        before = tree_digest(case)
        proc = apply(case, source_root)
        after = tree_digest(case)
        error = proc.stderr.strip().split("\n")[0] if proc.stderr.strip() else ""
        good = (
            proc.returncode == ap.EXIT_ERROR
            and rel in error
            and expected in error
            and before == after
        )
        ok &= good
        notes.append(
            f"{'ok ' if good else 'BAD'} {rel}: exit {proc.returncode}, tree "
            f"{'unchanged' if before == after else 'CHANGED'}; {error or output_of(proc)}"
        )
        shutil.rmtree(case)
    return ok, "\n".join(notes)


SOURCE_ENTRIES = (
    "aten_native",
    "aten_functorch",
    "native_functions_patch.yaml",
    "derivatives_patch.yaml",
    "torch_correlation",
    "csrc",
    "patch",
    "test",
)


def source_tree(source_root: Path, work: Path) -> tuple[Path, str]:
    """A copy of the patch inputs, with PLACEHOLDERS for the files still missing."""
    out = work / "sources"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.o", ".*")
    for name in SOURCE_ENTRIES:
        src = source_root / name
        if src.is_dir():
            shutil.copytree(src, out / name, ignore=ignore)
        elif src.is_file():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out / name)
    notes = []
    for path in sorted(p for p in PLACEHOLDERS.rglob("*") if p.is_file()):
        rel = path.relative_to(PLACEHOLDERS)
        real_dir = (source_root / rel).parent
        if not (source_root / rel).exists() and not (
            rel.parts[0] == "aten_functorch" and real_dir.is_dir()
        ):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out / rel)
            notes.append(f"PLACEHOLDER {rel}  (missing from {source_root})")
    return out, "\n".join(notes)


UPSTREAM_PATHS = REPO / "tools" / "upstream_paths.txt"
# Each starts with a literal, which re scans for quickly (0.8 s for libtorch_cpu.so).
LIBRARY_PATHS = [
    re.compile(re.escape(prefix) + rb"[A-Za-z0-9_/.+-]+\.(?:cpp|cu|h|cuh)")
    for prefix in (b"aten/src/ATen/", b"torch/csrc/")
]
# Must be found by both sources, or the check itself is broken.
KNOWN_UPSTREAM = "aten/src/ATen/native/Correlation.cpp"


def upstream_files() -> tuple[set[str], set[str], list[str]]:
    """Paths upstream is known to have: the committed list, the source paths
    compiled into the installed libtorch libraries, and the wheel's files."""
    listed = {
        line.strip()
        for line in UPSTREAM_PATHS.read_text(encoding="utf-8").split("\n")
        if line.strip() and not line.startswith("#")
    }
    site = package_dir("torch").parent
    compiled: set[str] = set()
    libraries = [
        site / "torch/lib" / name for name in ("libtorch_cpu.so", "libtorch_cuda.so")
    ]
    libraries = [lib for lib in libraries if lib.is_file()]
    for lib in libraries:
        with (
            open(lib, "rb") as f,
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            for pattern in LIBRARY_PATHS:
                compiled |= {m.group().decode() for m in pattern.finditer(data)}
    wheel = {p.relative_to(site).as_posix() for p in (site / "torch").rglob("*.py")}
    return listed, compiled | wheel, [lib.name for lib in libraries]


def step_new_files(added: list[str]) -> tuple[bool, str]:
    listed, compiled, libraries = upstream_files()
    lines = [
        f"{len(added)} added files; upstream: {len(listed)} listed paths (tools/upstream_paths.txt), "
        f"{len(compiled)} paths from {', '.join(libraries)} and the wheel's torch/**/*.py"
    ]
    ok = KNOWN_UPSTREAM in listed and KNOWN_UPSTREAM in compiled
    if not ok:
        lines.append(
            f"BAD: {KNOWN_UPSTREAM} (upstream's torch.cov/corrcoef) not found: the check is broken"
        )
    for rel in added:
        clash = [
            name
            for name, paths in (("listed", listed), ("compiled/wheel", compiled))
            if rel in paths
        ]
        ok &= not clash
        lines.append(
            f"{'BAD' if clash else 'new'} {rel}"
            + (f"  (exists upstream: {', '.join(clash)})" if clash else "")
        )
    return ok, "\n".join(lines)


def schemas(root: Path, source_root: Path, work: Path) -> list[str]:
    """Schemas of our operators and their autogenerated overloads, via torchgen."""
    from torchgen.gen import parse_native_yaml

    body, names = sources.yaml_entries(
        (source_root / sources.SRC_NATIVE_YAML).read_text(encoding="utf-8"),
        sources.SRC_NATIVE_YAML,
        "func",
    )
    path = work / "ours.yaml"
    path.write_text(body + "\n", encoding="utf-8")
    parsed = parse_native_yaml(
        str(path),
        str(root / "aten/src/ATen/native/tags.yaml"),
        skip_native_fns_gen=False,
    )
    return [str(f.func) for f in parsed.native_functions]


def step_aten_codegen(root: Path, out: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "torchgen.gen",
        "--source-path",
        str(root / "aten/src/ATen"),
        "--install_dir",
        str(out / "aten"),
        "--aoti-install-dir",
        str(out / "aoti"),
        "--per-operator-headers",
        "--generate",
        "headers",
        "sources",
    ]
    return subprocess.Popen(
        cmd, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


AUTOGRAD_SCRIPT = """
import sys
from torchgen.packaged.autograd.gen_autograd import gen_autograd, gen_autograd_python
from torchgen.selective_build.selector import SelectiveBuilder
native, tags, out, autograd = sys.argv[1:5]
gen_autograd(native, tags, out, autograd, SelectiveBuilder.get_nop_selector())
gen_autograd_python(native, tags, out, autograd)
"""


def step_autograd_codegen(root: Path, out: Path) -> subprocess.Popen:
    (out / "autograd").mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-c",
        AUTOGRAD_SCRIPT,
        str(root / "aten/src/ATen/native/native_functions.yaml"),
        str(root / "aten/src/ATen/native/tags.yaml"),
        str(out / "autograd"),
        str(root / "tools/autograd"),
    ]
    return subprocess.Popen(
        cmd, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def grep(paths: list[Path], needle: str) -> bool:
    return any(
        needle in p.read_text(encoding="utf-8", errors="replace")
        for p in paths
        if p.is_file()
    )


def check_aten_outputs(out: Path, ops: list[str]) -> list[str]:
    """Our schemas are registered, have per-operator headers and CPU/CUDA kernels."""
    aten = out / "aten"
    problems = []
    for op in ops:
        if not grep([aten / "RegisterSchema.cpp"], f'm.def("{op}('):
            problems.append(f"RegisterSchema.cpp does not define {op}")
        name = op.split(".")[0]
        for header in (f"ops/{name}.h", f"ops/{name}_native.h", f"ops/{name}_ops.h"):
            if not (aten / header).is_file():
                problems.append(f"missing per-operator header {header}")
        if "." in op:  # autogenerated out= overload
            files = sorted(aten.glob("RegisterCompositeExplicitAutograd_*.cpp"))
            if not grep(files, f'm.impl("{op}",'):
                problems.append(
                    f"RegisterCompositeExplicitAutograd_*.cpp does not register {op}"
                )
            continue
        for backend in ("CPU", "CUDA"):
            if not grep(
                sorted(aten.glob(f"Register{backend}_*.cpp")), f'm.impl("{op}",'
            ):
                problems.append(f"Register{backend}_*.cpp does not register {op}")
    return problems


def check_autograd_outputs(out: Path, root: Path, source_root: Path) -> list[str]:
    autograd = out / "autograd"
    problems = []
    functions_h = autograd / "Functions.h"
    for node in ("CorrelationBackward0", "CorrelationBackwardBackward0"):
        if not grep([functions_h], f"struct TORCH_API {node}"):
            problems.append(f"Functions.h lacks the autograd node {node}")
    if not grep(sorted(autograd.glob("VariableType_*.cpp")), "CorrelationBackward0"):
        problems.append("VariableType_*.cpp does not use CorrelationBackward0")
    nn = autograd / "python_nn_functions.cpp"
    if not grep([nn], '{"correlation"'):
        problems.append(
            "python_nn_functions.cpp does not bind torch._C._nn.correlation"
        )
    # Every helper the formulas call must be declared in FunctionsManual.h.
    body, _ = sources.yaml_entries(
        (source_root / sources.SRC_DERIVATIVES_YAML).read_text(encoding="utf-8"),
        sources.SRC_DERIVATIVES_YAML,
        "name",
    )
    formulas = "\n".join(
        line.split(":", 1)[1]
        for line in body.split("\n")
        if line.startswith("  ") and ":" in line
    )
    native = (root / "aten/src/ATen/native/native_functions.yaml").read_text(
        encoding="utf-8"
    )
    aten_ops = set(re.findall(r"^- func: (\w+)", native, re.MULTILINE))
    manual = (root / "torch/csrc/autograd/FunctionsManual.h").read_text(
        encoding="utf-8"
    )
    called = set(re.findall(r"(?<![\w.:>])([A-Za-z_]\w*)\s*\(", formulas))
    for name in sorted(called - aten_ops - {"std", "at", "c10"}):
        if not re.search(rf"\b{re.escape(name)}\s*\(", manual):
            problems.append(
                f"derivatives call '{name}', declared neither as an ATen op nor in FunctionsManual.h"
            )
    return problems


def build_overlay(overlay: Path, root: Path) -> None:
    """A ``torch`` package of symlinks to the installed one, with the patched files real."""
    site = package_dir("torch").parent
    patched = {Path(rel) for rel in OVERLAY_FILES}
    real_dirs = {
        parent for rel in patched for parent in rel.parents if parent != Path(".")
    }
    patched_modules = {(rel.parent, rel.stem) for rel in patched}

    def fill(rel_dir: Path) -> None:
        (overlay / rel_dir).mkdir(parents=True, exist_ok=True)
        for entry in sorted((site / rel_dir).iterdir()):
            rel = rel_dir / entry.name
            if entry.name == "__pycache__":
                (overlay / rel).mkdir()
                for pyc in entry.iterdir():
                    if (rel_dir, pyc.name.split(".")[0]) not in patched_modules:
                        (overlay / rel / pyc.name).symlink_to(pyc)
            elif rel in real_dirs:
                fill(rel)
            elif rel not in patched:
                (overlay / rel).symlink_to(entry)

    fill(Path("torch"))
    for rel in patched:
        shutil.copyfile(root / rel, overlay / rel)


CHILD = REPO / "tools" / "check_patch_child.py"


def step_imports(
    root: Path, work: Path, schemas_list: list[str]
) -> tuple[list[tuple[str, bool, str]], str]:
    overlay = work / "overlay"
    build_overlay(overlay, root)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(overlay)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = run(
        [sys.executable, str(CHILD), str(overlay), json.dumps(schemas_list)],
        cwd=work,
        env=env,
    )
    for line in proc.stdout.split("\n"):
        if line.startswith("CHILD-RESULTS "):
            return [tuple(r) for r in json.loads(line[len("CHILD-RESULTS ") :])], ""
    return [], output_of(proc)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source-root",
        type=Path,
        default=REPO,
        help="this repository (default: %(default)s)",
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="work in DIR (created) and keep it"
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=2,
        help="run the two codegens in parallel (default 2)",
    )
    args = parser.parse_args(argv)
    source_root = args.source_root.resolve()

    started = time.monotonic()
    results = Results()
    if args.keep:
        work = args.keep.resolve()
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="check_patch_"))
    try:
        root, pristine, out = work / "root", work / "pristine", work / "codegen"
        t = time.monotonic()
        provenance = build_fake_root(root)
        source_root, placeholders = source_tree(source_root, work)
        provenance += ("\n" + placeholders) if placeholders else ""
        shutil.copytree(root, pristine)
        out.mkdir()
        results.add(
            "fake PyTorch root from the installed wheel",
            True,
            time.monotonic() - t,
            provenance,
        )

        t = time.monotonic()
        proc = apply(root, source_root)
        applied = proc.returncode == 0
        results.add(
            "apply_patch.py applies", applied, time.monotonic() - t, output_of(proc)
        )
        if not applied:
            return finish(results, started, work, args.keep)
        applied_digest = tree_digest(root)

        t = time.monotonic()
        pristine_files = tree_digest(pristine)
        ok, detail = step_new_files(sorted(set(applied_digest) - set(pristine_files)))
        results.add(
            "files the patch adds do not exist upstream",
            ok,
            time.monotonic() - t,
            detail,
        )

        t = time.monotonic()
        proc = apply(root, source_root)
        same = tree_digest(root) == applied_digest
        results.add(
            "second apply changes nothing (idempotent)",
            proc.returncode == 0 and same and "nothing to do" in proc.stdout,
            time.monotonic() - t,
            "" if same else "the tree changed on the second run\n" + output_of(proc),
        )
        t = time.monotonic()
        proc = apply(root, source_root, "--check")
        results.add(
            "--check reports nothing pending",
            proc.returncode == 0,
            time.monotonic() - t,
            "" if proc.returncode == 0 else output_of(proc),
        )

        t = time.monotonic()
        patch = work / "correlation.patch"
        before = tree_digest(pristine)
        proc = apply(pristine, source_root, "--emit-patch", str(patch))
        untouched = tree_digest(pristine) == before
        git = shutil.which("git")
        if proc.returncode != 0 or not untouched:
            results.add(
                "--emit-patch + git apply reproduces the tree",
                False,
                time.monotonic() - t,
                ("--emit-patch touched the tree\n" if not untouched else "")
                + output_of(proc),
            )
        elif git is None:
            results.add(
                "--emit-patch + git apply reproduces the tree",
                None,
                time.monotonic() - t,
                "git not found",
            )
        else:
            copy = work / "roundtrip"
            shutil.copytree(pristine, copy)
            env = dict(
                os.environ, GIT_CEILING_DIRECTORIES=str(work)
            )  # never an enclosing repository
            git_proc = run(
                [git, "apply", "--whitespace=nowarn", str(patch)], cwd=copy, env=env
            )
            equal = git_proc.returncode == 0 and tree_digest(copy) == applied_digest
            results.add(
                "--emit-patch + git apply reproduces the tree",
                equal,
                time.monotonic() - t,
                f"{patch.stat().st_size} bytes, {patch.read_text().count('diff --git')} files"
                + ("" if equal else "\n" + output_of(git_proc)),
            )
            shutil.rmtree(copy)

        t = time.monotonic()
        ok, detail = step_moved_on(pristine, work, source_root)
        results.add(
            "moved-on files: clear error naming file and anchor, nothing written",
            ok,
            time.monotonic() - t,
            detail,
        )

        t = time.monotonic()
        try:
            ops = schemas(root, source_root, work)
        except Exception as e:  # torchgen rejects our entries
            results.add(
                "torchgen parses our native_functions entries",
                False,
                time.monotonic() - t,
                repr(e),
            )
            return finish(results, started, work, args.keep)
        op_names = [s.split("(")[0] for s in ops]
        aten_name = "ATen codegen (torchgen.gen, full patched native_functions.yaml)"
        autograd_name = (
            "autograd codegen (gen_autograd + gen_autograd_python, full patched yamls)"
        )
        outputs = {}
        aten_proc = step_aten_codegen(root, out)
        if args.jobs < 2:
            outputs[aten_name] = aten_proc.communicate()[0]
        autograd_proc = step_autograd_codegen(root, out)
        for name, proc in ((aten_name, aten_proc), (autograd_name, autograd_proc)):
            if name not in outputs:
                outputs[name] = proc.communicate()[0]
        elapsed = time.monotonic() - t
        parallel = (
            " [both codegens, in parallel]" if args.jobs >= 2 else " [both codegens]"
        )
        aten_ok = aten_proc.returncode == 0
        problems = check_aten_outputs(out, op_names) if aten_ok else []
        results.add(
            aten_name + parallel,
            aten_ok and not problems,
            elapsed,
            ("ops: " + ", ".join(op_names) + "\n" if aten_ok else "")
            + "\n".join(problems)
            + ("" if aten_ok else outputs[aten_name][-4000:]),
        )
        autograd_ok = autograd_proc.returncode == 0
        problems = check_autograd_outputs(out, root, source_root) if autograd_ok else []
        results.add(
            autograd_name,
            autograd_ok and not problems,
            0.0,
            "\n".join(problems)
            + ("" if autograd_ok else outputs[autograd_name][-4000:]),
        )

        t = time.monotonic()
        child, failure = step_imports(root, work, ops)
        results.add(
            "import the patched Python modules (child interpreter, overlay torch)",
            not failure,
            time.monotonic() - t,
            failure,
        )
        for name, ok, detail in child:
            results.add(f"  {name}", ok, 0.0, "" if ok else detail)
        return finish(results, started, work, args.keep)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def finish(results: Results, started: float, work: Path, keep: Path | None) -> int:
    total = time.monotonic() - started
    counts = {
        s: sum(1 for r in results.rows if r[0] == s) for s in ("PASS", "FAIL", "SKIP")
    }
    print("\n==== check_patch summary ====")
    for status, name, seconds, _ in results.rows:
        print(f"  {status}  {name}" + (f"  ({seconds:.1f} s)" if seconds else ""))
    print(
        f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
        f"in {total:.1f} s" + (f"; work dir kept: {work}" if keep else "")
    )
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
