"""Preview build of torch.nn.functional.correlation for stock PyTorch.

    python -m pip install --no-build-isolation .

builds against the torch installed in the current environment (>= 2.11),
running that torch's own torchgen and autograd codegen over the patch yaml;
see tools/build_preview.py. ``python setup.py build_ext --inplace`` builds in
place for development. Set TORCH_CORRELATION_CUDA=off to skip the CUDA sources.
"""

import os
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))


class CodegenBuildExt(build_ext):
    """Builds the one extension with tools/build_preview.py (codegen + ninja)."""

    def build_extension(self, ext):
        import build_preview

        lib = build_preview.build(
            ROOT / "build" / "preview", os.environ.get("TORCH_CORRELATION_CUDA", "auto"))
        dest = Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest)


setup(
    name="torch_correlation",
    version="0.1.0",
    description="Preview of torch.nn.functional.correlation (the ATen patch, built against stock torch)",
    packages=["torch_correlation"],
    ext_modules=[Extension("torch_correlation._C", sources=[])],
    cmdclass={"build_ext": CodegenBuildExt},
    python_requires=">=3.10",
    install_requires=["torch>=2.11"],
)
