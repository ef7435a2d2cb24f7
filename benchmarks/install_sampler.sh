#!/usr/bin/env bash
# Builds the benchmark's third-party peer, spatial-correlation-sampler, from
# its sdist on the package registry into the current Python environment, as a
# CPU-only extension against the torch installed there:
#
#   PYTHON=.venv/bin/python bash benchmarks/install_sampler.sh
#
# Its setup.py always builds the CUDA kernel and compiles with -std=c++17;
# torch >= 2.14's headers need C++20, and a CPU benchmark needs no CUDA. This
# script changes exactly those two settings in an unpacked copy (in a
# temporary folder; nothing of it is kept in this repository) and installs it.
# The sampler's own code is built unchanged.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
VERSION="${SAMPLER_VERSION:-0.5.0}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Its setup.py constructs a CUDAExtension even to report its metadata, which
# needs a CUDA_HOME; any folder does for that step.
CUDA_HOME="${CUDA_HOME:-$work}" "$PYTHON" -m pip download -q --no-deps --no-binary :all: \
  --no-build-isolation "spatial-correlation-sampler==$VERSION" -d "$work"
tar -xzf "$work"/spatial_correlation_sampler-"$VERSION".tar.gz -C "$work"
src="$work/spatial_correlation_sampler-$VERSION"
# Its sources include c10/cuda headers even in a CPU-only build: on a CUDA
# build of torch, point the compiler at the CUDA runtime headers (CUDA_HOME,
# or the nvidia-* wheels beside torch).
CPATH="$("$PYTHON" -c '
import glob, importlib.util, os
dirs = [os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "include")]
spec = importlib.util.find_spec("nvidia")
for root in (spec.submodule_search_locations if spec else []):
    dirs += sorted(glob.glob(os.path.join(root, "*", "include")))
print(":".join(d for d in dirs if os.path.isdir(d)))
')${CPATH:+:$CPATH}"
export CPATH
sed -i -e 's/^CPU_ONLY = False$/CPU_ONLY = True/' -e "s/'-std=c++17'/'-std=c++20'/" "$src/setup.py"
grep -q '^CPU_ONLY = True$' "$src/setup.py" || { echo "install_sampler.sh: setup.py changed upstream" >&2; exit 1; }
"$PYTHON" -m pip install -q --no-deps --no-build-isolation "$src"
"$PYTHON" -c "from spatial_correlation_sampler import spatial_correlation_sample; print('spatial-correlation-sampler $VERSION: importable')"
