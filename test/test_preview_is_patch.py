# Owner(s): ["module: nn"]

"""The preview registers at run time exactly what the upstream patch adds as source.

The preview package (``import torch_correlation``) changes the running torch:
dispatcher kernels of ``aten::correlation`` and ``aten::correlation_backward``,
Python attributes on ``torch``, and entries in tables that torch keeps in
Python (decompositions, Inductor lowerings, Dynamo trace rules, flop
formulas). Each must be something the patch adds as source, or the in-tree
build would lack it and the in-tree tests would fail; and each runtime edit
the patch makes to torch must be something the preview does too.

How: two fresh interpreters take a snapshot of those registries, one with and
one without the preview; their difference is what the preview registers.
``tools/apply_patch.py --emit-patch`` is run on a tree made of the installed
torch wheel's files (``tools/check_patch.py``'s ``build_fake_root``), and the
text each registration needs is looked up among the lines the emitted diff
adds to the file upstream keeps it in (``COUNTERPARTS``). The reverse
direction maps every file the diff touches to the registration that
implements it in the preview, or to the reason it needs none
(``PATCHED_FILES``).

Preview only: not copied into the PyTorch tree. Costs about 30 s (three
interpreters importing Inductor).
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPS = ("correlation", "correlation_backward")

SNAPSHOT = textwrap.dedent(r"""
    import json, re, sys
    import torch
    if sys.argv[1] == "preview":
        import torch_correlation
    import torch._decomp
    import torch._dynamo.trace_rules as trace_rules
    import torch._inductor.decomposition as inductor_decomposition
    import torch._inductor.lowering as lowering
    import torch.utils.flop_counter as flop_counter
    from torch._subclasses.fake_tensor import FakeTensorMode

    def ours(name):
        return "correlation" in str(name)

    dispatch = {}
    for op in ("correlation", "correlation_backward"):
        for overload in ("", ".out"):
            name = f"aten::{op}{overload}"
            try:
                dump = torch._C._dispatch_dump(name)
            except RuntimeError:
                continue
            kernels = {}
            for line in dump.splitlines():
                m = re.match(r"([\w\[\]]+): registered at (\S+?)(?::\d+)? ", line + " ")
                if m and not line.startswith(("name:", "schema:", "debug:", "alias analysis")):
                    kernels[m.group(1)] = m.group(2)
            dispatch[name] = kernels
    attrs = {}
    for label, module in (("torch", torch), ("torch._C._nn", torch._C._nn),
                          ("torch.nn.functional", torch.nn.functional), ("torch.nn", torch.nn),
                          ("torch.nn.modules", torch.nn.modules)):
        attrs[label] = sorted(n for n in dir(module) if ours(n.lower()))
    snapshot = {
        "dispatch": dispatch,
        "attrs": attrs,
        "decompositions": sorted(str(k) for k in torch._decomp.decomposition_table if ours(k)),
        "core_aten_decompositions": sorted(
            str(k) for k in torch._decomp.core_aten_decompositions() if ours(k)),
        "inductor_decompositions": sorted(
            str(k) for k in inductor_decomposition.decompositions if ours(k)),
        "inductor_lowerings": sorted(str(k) for k in lowering.lowerings if ours(k)),
        "trace_rules": sorted(
            n for n in trace_rules.torch_c_binding_in_graph_functions if ours(n)),
        "trace_rules_non_c": sorted(
            n for n in trace_rules.torch_non_c_binding_in_graph_functions if ours(n)),
        "flop_formulas": sorted(str(k) for k in flop_counter.flop_registry if ours(k)),
        "meta_table": sorted(str(k) for k in torch._decomp.meta_table if ours(k)),
        "fake_tensor_cpp_meta_symint": sorted(
            str(k) for k in FakeTensorMode._cpp_meta_supports_symint if ours(k)),
        # TorchScript's builtin mapping: name -> whether the mapped object is
        # the torch._C._nn function of that name (what register_all maps).
        "jit_builtins": sorted(
            f"{n} {f is getattr(torch._C._nn, n.split('::')[1], None)}"
            for f, n in torch.jit._builtins._builtin_ops if ours(n)),
    }
    print("SNAPSHOT " + json.dumps(snapshot))
""")


def snapshot(kind: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
    proc = subprocess.run(
        [sys.executable, "-c", SNAPSHOT, kind],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise AssertionError(f"snapshot ({kind}) failed:\n{proc.stdout}\n{proc.stderr}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("SNAPSHOT ")][-1]
    return json.loads(line[len("SNAPSHOT ") :])


def preview_registrations(base: dict, preview: dict) -> list[tuple[str, str, str]]:
    """(kind, name, detail) for everything the preview adds to torch."""
    found = []
    for op, kernels in preview["dispatch"].items():
        before = base["dispatch"].get(op, {})
        for key, where in kernels.items():
            if before.get(key) != where:
                found.append(("dispatch", f"{op} {key}", where))
    for module, names in preview["attrs"].items():
        for name in sorted(set(names) - set(base["attrs"].get(module, []))):
            found.append(("attr", f"{module}.{name}", ""))
    for kind in (
        "decompositions",
        "core_aten_decompositions",
        "inductor_lowerings",
        "trace_rules",
        "trace_rules_non_c",
        "flop_formulas",
        "meta_table",
        "fake_tensor_cpp_meta_symint",
        "jit_builtins",
    ):
        for name in sorted(set(preview[kind]) - set(base[kind])):
            found.append((kind, name, ""))
    # Entries the preview removes (Inductor keeps calling the kernel).
    for name in sorted(
        set(base["inductor_decompositions"]) - set(preview["inductor_decompositions"])
    ):
        found.append(("inductor_decompositions_removed", name, ""))
    if set(preview["decompositions"]) - set(preview["inductor_decompositions"]):
        for name in sorted(
            set(preview["decompositions"]) - set(preview["inductor_decompositions"])
        ):
            found.append(("inductor_decompositions_excluded", name, ""))
    return found


YAML = "aten/src/ATen/native/native_functions.yaml"
DERIVATIVES = "tools/autograd/derivatives.yaml"

# Generated kernels (torchgen / autograd codegen): the counterpart is the yaml
# entry they are generated from.
GENERATED_KEYS = {
    "Tracer": (YAML, "- func: {op}("),
    "Functionalize": (YAML, "- func: {op}("),
    "ADInplaceOrView": (YAML, "- func: {op}("),
    "BackendSelect": (YAML, "- func: {op}("),
}


def counterparts(kind: str, name: str) -> list[tuple[str, str]] | None:
    """(patched file, text its added lines must contain) for one registration."""
    if kind == "dispatch":
        op_name, key = name.split(" ")
        op, _, overload = op_name[len("aten::") :].partition(".")
        if overload == "out":
            return [(YAML, f"autogen: {op}.out")]
        if key in ("CPU", "CUDA"):
            return [(YAML, f"CPU, CUDA: {op}")]
        if key == "Meta":
            return [(YAML, f"Meta: {op}_meta")]
        if key.startswith("Autograd"):
            return [(DERIVATIVES, f"- name: {op}(")]
        if key in GENERATED_KEYS:
            path, text = GENERATED_KEYS[key]
            return [(path, text.format(op=op))]
        if key == "FuncTorchBatched":
            return [
                (
                    "aten/src/ATen/functorch/BatchRulesSpatialCorrelation.cpp",
                    f"VMAP_SUPPORT({op}, ",
                )
            ]
        if key in ("AutocastCUDA", "AutocastXPU", "AutocastMPS", "AutocastPrivateUse1"):
            return [("aten/src/ATen/autocast_mode.h", f"_({op})")]
        if key == "AutocastCPU":
            return [
                (
                    "aten/src/ATen/autocast_mode.cpp",
                    f"KERNEL_CPU({op}, lower_precision_fp)",
                )
            ]
        return None
    if kind == "attr":
        module, _, attr = name.rpartition(".")
        if module == "torch._C._nn":
            return [(YAML, f"- func: {attr}(")]
        if module == "torch.nn.functional":
            return [("torch/nn/functional.py", f"{attr} = _add_docstr(")]
        if module in ("torch.nn", "torch.nn.modules"):
            return [
                ("torch/nn/modules/correlation.py", f"class {attr}("),
                ("torch/nn/modules/__init__.py", attr),
            ]
        return None
    op = name.split(".")[1] if name.startswith("aten.") else name
    if kind == "decompositions":
        return [
            ("torch/_decomp/decompositions.py", f"@register_decomposition(aten.{op})")
        ]
    if kind == "core_aten_decompositions":
        return [("torch/_decomp/__init__.py", f"aten.{op}")]
    if kind in ("inductor_decompositions_removed", "inductor_decompositions_excluded"):
        return [("torch/_inductor/decomposition.py", f"aten.{op}")]
    if kind == "inductor_lowerings":
        return [("torch/_inductor/lowering.py", f"make_fallback(aten.{op}")]
    if kind in ("trace_rules", "trace_rules_non_c"):
        return [("torch/_dynamo/trace_rules.py", f'"{name}"')]
    if kind == "fake_tensor_cpp_meta_symint":
        return [("torch/_subclasses/fake_tensor.py", name)]
    if kind == "flop_formulas":
        return [
            ("torch/utils/flop_counter.py", f"@register_flop_formula(aten.{op})"),
            ("torch/utils/flop_counter.py", f"aten.{op}: {op}_flop"),
        ]
    if kind == "jit_builtins" and name.endswith(" True"):
        # The binding of torch._C._nn, mapped as register_all maps it.
        return [(YAML, f"- func: {name.split('::')[1].split(' ')[0]}(")]
    # meta_table (a Python meta kernel) and any other TorchScript mapping
    # (of a Python wrapper) have no counterpart: upstream has neither.
    return None


# Every file the patch touches: the registration kinds the preview must show
# for it (the reverse direction), or None with the reason it needs none.
PATCHED_FILES = {
    YAML: ("dispatch",),
    DERIVATIVES: ("dispatch",),
    "aten/src/ATen/functorch/BatchRulesSpatialCorrelation.cpp": ("dispatch",),
    "aten/src/ATen/autocast_mode.h": ("dispatch",),
    "aten/src/ATen/autocast_mode.cpp": ("dispatch",),
    "torch/nn/functional.py": ("attr",),
    "torch/nn/modules/correlation.py": ("attr",),
    "torch/nn/modules/__init__.py": ("attr",),
    "torch/nn/__init__.py": ("attr",),
    "torch/_decomp/decompositions.py": ("decompositions",),
    "torch/_decomp/__init__.py": ("core_aten_decompositions",),
    "torch/_inductor/decomposition.py": ("inductor_decompositions_excluded",),
    "torch/_inductor/lowering.py": ("inductor_lowerings",),
    "torch/_dynamo/trace_rules.py": ("trace_rules",),
    "torch/utils/flop_counter.py": ("flop_formulas",),
    "torch/_subclasses/fake_tensor.py": ("fake_tensor_cpp_meta_symint",),
    # Sources compiled into the preview as they are (aten_native/, csrc/autograd/).
    "aten/src/ATen/native/": None,
    "torch/csrc/autograd/FunctionsManual.h": None,
    "torch/csrc/autograd/FunctionsManual.cpp": None,
    # Build lists, typing, docs, tests and test-only tables: no run-time effect.
    "build_variables.bzl": None,
    "tools/pyi/gen_pyi.py": None,
    "torch/overrides.py": None,
    "torch/testing/_internal/common_methods_invocations.py": None,
    "torch/testing/_internal/common_modules.py": None,
    "torch/testing/_internal/common_mps.py": None,
    "docs/": None,
    "test/": None,
}


def added_lines(diff: str) -> dict[str, str]:
    """Patched file -> the text of the lines the diff adds to it."""
    files: dict[str, list[str]] = {}
    current = None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            path = line[4:].strip()
            current = path.removeprefix("b/")
            files.setdefault(current, [])
        elif line.startswith("+") and current is not None:
            files[current].append(line[1:])
    return {path: "\n".join(lines) for path, lines in files.items()}


def emit_patch() -> str:
    sys.path.insert(0, str(REPO / "tools"))
    import check_patch

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pytorch"
        check_patch.build_fake_root(root)
        out = Path(tmp) / "correlation.patch"
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "tools" / "apply_patch.py"),
                str(root),
                "--source-root",
                str(REPO),
                "--emit-patch",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0 or not out.exists():
            raise AssertionError(
                "tools/apply_patch.py --emit-patch failed on the wheel's files:\n"
                + proc.stdout
                + proc.stderr
            )
        return out.read_text()


class TestPreviewIsPatch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.base = snapshot("base")
        cls.preview = snapshot("preview")
        cls.registrations = preview_registrations(cls.base, cls.preview)
        try:
            cls.patch = added_lines(emit_patch())
            cls.patch_error = None
        except AssertionError as e:
            cls.patch, cls.patch_error = None, str(e)

    def require_patch(self):
        if self.patch is None:
            self.fail(self.patch_error)

    # ------------------------------------------------ the preview alone

    def test_enumeration_finds_the_registrations(self):
        # The snapshots see what the preview is known to register, so the
        # comparisons below are not vacuous.
        names = {(kind, name) for kind, name, _ in self.registrations}
        for key in (
            "CPU",
            "Meta",
            "Autograd[alias]",
            "FuncTorchBatched",
            "AutocastCPU",
        ):
            self.assertIn(("dispatch", f"aten::correlation {key}"), names)
        self.assertIn(("attr", "torch.nn.functional.correlation"), names)
        self.assertIn(("flop_formulas", "aten.correlation"), names)
        self.assertIn(("trace_rules", "torch._C._nn.correlation"), names)
        self.assertIn(("inductor_lowerings", "aten.correlation.default"), names)

    def test_no_python_meta_vmap_or_builtin_mapping(self):
        # Upstream has none of these, so the preview must not have them.
        kinds = {kind for kind, _, _ in self.registrations}
        self.assertNotIn("meta_table", kinds)
        self.assertEqual(
            sorted(n for k, n, _ in self.registrations if k == "jit_builtins"),
            ["aten::correlation True"],
        )
        for op, kernels in self.preview["dispatch"].items():
            for key, where in kernels.items():
                self.assertFalse(
                    where.endswith(".py"), f"{op} {key}: a Python kernel ({where})"
                )
            if "FuncTorchBatched" in kernels:
                self.assertIn(
                    "BatchRulesSpatialCorrelation.cpp", kernels["FuncTorchBatched"]
                )
        self.assertEqual(
            self.preview["trace_rules_non_c"],
            [],
            "F.correlation is the C binding; no Python function to trace",
        )

    def test_every_registration_is_known(self):
        unknown = [
            (k, n, d) for k, n, d in self.registrations if counterparts(k, n) is None
        ]
        self.assertEqual(unknown, [], "registrations with no upstream counterpart")

    # ------------------------------------- against the patch (patch branch)

    def test_every_registration_is_in_the_patch(self):
        self.require_patch()
        missing = []
        for kind, name, detail in self.registrations:
            for path, text in counterparts(kind, name) or []:
                if text not in self.patch.get(path, ""):
                    missing.append(f"{kind} {name} ({detail}): {path} lacks {text!r}")
        self.assertEqual(missing, [], "\n".join(missing))

    def test_every_patched_file_is_in_the_preview(self):
        self.require_patch()
        kinds = {kind for kind, _, _ in self.registrations}
        problems = []
        for path in sorted(self.patch):
            entry = next(
                (
                    v
                    for k, v in PATCHED_FILES.items()
                    if path == k or (k.endswith("/") and path.startswith(k))
                ),
                "unknown",
            )
            if entry == "unknown":
                problems.append(
                    f"{path}: the patch edits it, the preview has no counterpart"
                )
            elif entry is not None and not set(entry) & kinds:
                problems.append(f"{path}: the preview registers no {entry}")
        self.assertEqual(problems, [], "\n".join(problems))

    def test_no_python_meta_in_the_patch(self):
        self.require_patch()
        self.assertNotIn("torch/_meta_registrations.py", self.patch)


if __name__ == "__main__":
    unittest.main()
