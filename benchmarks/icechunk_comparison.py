"""Icechunk against our store's writes: a 48-run study written run by run, each run a commit.

Icechunk (transactional, versioned Zarr) is the candidate for concurrent writes that the
store issue named. Here each run writes its chunk of a (runs, 2,000, 120) float32 array
in its own session and commits it, from one process and from two at once (the second
rebasing on conflict, as concurrent Parsl workers would); beside it, the same arrays through
our `RunWriter`. Prints ms per run, files and bytes per run, and how many runs read back
intact (icechunk warns that its local-filesystem storage is not safe for concurrent
commits: a cluster's shared filesystem is where our campaigns write). Icechunk is not a
dependency of the project: run this in an environment that has it (`pip install icechunk`)
for its rows, and in the project's environment for ours; each side prints what it can.
Usage: python benchmarks/icechunk_comparison.py [--runs 48] [--steps 2000] [--slabs 120]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def array_of(seed: int, steps: int, slabs: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (300 + 200 * np.exp(-np.arange(slabs) / 30.0) + rng.normal(0, 15.0, (steps, slabs))).astype(np.float32)


def icechunk_write(path: str, runs: list[int], steps: int, slabs: int) -> None:
    import icechunk
    import zarr

    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(path))
    for run in runs:
        values = array_of(run, steps, slabs)
        while True:
            session = repo.writable_session("main")
            zarr.open_array(session.store, path="slab_temperature", mode="r+")[run] = values
            try:
                session.commit(f"run {run}", rebase_with=icechunk.ConflictDetector())
                break
            except icechunk.ConflictError:
                continue


def icechunk_side(work: Path, n: int, steps: int, slabs: int, processes: int) -> tuple[float, int]:
    """Seconds to write the runs, and how many read back intact."""
    import icechunk
    import zarr

    path = str(work / f"icechunk-{processes}")
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(path))
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="slab_temperature", shape=(n, steps, slabs), chunks=(1, steps, slabs),
                      dtype="float32", fill_value=np.nan)
    session.commit("allocate")
    started = time.perf_counter()
    shares = [list(range(k, n, processes)) for k in range(processes)]
    if processes == 1:
        icechunk_write(path, shares[0], steps, slabs)
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            pool.starmap(icechunk_write, [(path, share, steps, slabs) for share in shares])
    elapsed = time.perf_counter() - started
    session = repo.readonly_session("main")
    stored = zarr.open_array(session.store, path="slab_temperature", mode="r")
    return elapsed, sum(np.array_equal(stored[k], array_of(k, steps, slabs)) for k in range(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=48)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--slabs", type=int, default=120)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="icechunk-"))
    try:
        rows = []
        try:
            import icechunk  # noqa: F401
        except ImportError:
            processes_to_run = ()  # the project's environment: our side only
        else:
            processes_to_run = (1, 2)
        for processes in processes_to_run:
            elapsed, intact = icechunk_side(work, args.runs, args.steps, args.slabs, processes)
            files = [p for p in (work / f"icechunk-{processes}").rglob("*") if p.is_file()]
            rows.append((f"icechunk, {processes} process{'es' if processes > 1 else ''}", elapsed, len(files),
                         sum(p.stat().st_size for p in files), intact))
        try:
            import sys

            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            import xarray as xr

            from campaign.sweep import sweep_axes
            from storage import fields

            template = xr.Dataset({"slab_temperature": (("time", "z"), array_of(0, args.steps, args.slabs))})
            fields.allocate_study(work / "ours.zarr", "s", sweep_axes({"k": list(range(args.runs))}, 1), template)
            started = time.perf_counter()
            for k in range(args.runs):
                fields.RunWriter(work / "ours.zarr", "s", {"k": k, "replica": 0}).write(
                    {"slab_temperature": array_of(k, args.steps, args.slabs)}, fields.RUN_COMPLETE, args.steps)
            elapsed = time.perf_counter() - started
            files = [p for p in (work / "ours.zarr").rglob("*") if p.is_file()]
            stored = fields.open_study(work / "ours.zarr", "s").slab_temperature.values
            intact = sum(np.array_equal(stored[k, 0], array_of(k, args.steps, args.slabs)) for k in range(args.runs))
            rows.append(("ours (RunWriter)", elapsed, len(files), sum(p.stat().st_size for p in files), intact))
        except ImportError:
            pass  # an environment with icechunk but not the project's stack
        print(f"{args.runs} runs of {args.steps} x {args.slabs} float32, a commit (icechunk) or a write (ours) each")
        print(f"{'':26} {'ms per run':>11} {'files per run':>14} {'kB per run':>11} {'runs intact':>12}")
        for name, elapsed, n_files, n_bytes, intact in rows:
            print(f"{name:26} {1000 * elapsed / args.runs:11.1f} {n_files / args.runs:14.1f} "
                  f"{n_bytes / args.runs / 1e3:11.0f} {f'{intact}/{args.runs}':>12}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
