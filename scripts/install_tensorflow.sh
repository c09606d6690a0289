#!/usr/bin/env bash
# DeePMD-kit's TensorFlow backend, for benchmarks/deepmd_backends.py only (not a dependency).
#
# deepmd-kit 3.2.0's `[cpu]` extra pins tensorflow-cpu 2.21.0. Installed into the project's
# environment it would downgrade h5py (3.16 -> 3.14); so it goes into its own directory,
# .venv/tensorflow-site (1.4 GB), without dependencies, next to the venv's numpy and h5py,
# and is put on PYTHONPATH only by the benchmark. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
site="$here/.venv/tensorflow-site"
if PYTHONPATH="$site" "$here/.venv/bin/python" -c "import tensorflow" 2>/dev/null; then
  exit 0
fi
echo "install: tensorflow-cpu 2.21.0 into $site (about 1 minute)"
"$here/.venv/bin/python" -m pip --disable-pip-version-check -q install --target "$site" --no-deps \
  tensorflow-cpu==2.21.0 grpcio==1.85.1 absl-py==2.5.1 astunparse==1.6.3 flatbuffers==25.12.19 gast==0.7.0 \
  google-pasta==0.2.0 keras==3.15.1 termcolor==3.3.0 namex==0.1.0 optree==0.20.0 protobuf==7.36.2 six==1.17.0 \
  2>&1 | grep -v "^WARNING: Location '.*' is ignored" || true
PYTHONPATH="$site" "$here/.venv/bin/python" -c "import tensorflow" 2>/dev/null
