"""Write and reduce a 48-run x 2,000-step x 120-slab sweep: our store against plain .npy files.

Each run is written as a worker writes it (`RunWriter`: the arrays of the default fields,
at the dtypes they declare, then the run's provenance and status); the same arrays go to
one .npy file each, a directory per run. Prints MB/s for both and the ratio ours/npy
(write), the time of a reduction (last 20 % of time, mean over replicas -> (temperature,
rate, z) profiles) on each, and the store's files and bytes per run.
Usage: python benchmarks/store_throughput.py [--runs 48] [--steps 2000] [--slabs 120]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from campaign.sweep import sweep_axes
from storage import fields, reduce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=48, help="4 temperatures x 3 rates x replicas")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--slabs", type=int, default=120)
    args = parser.parse_args()
    replicas = max(1, args.runs // 12)
    sweep = {"temperature": [100, 200, 300, 400], "zip": [{"rate": [1, 5, 20], "falling_speed": [1000, 5000, 20000]}]}
    axes = sweep_axes(sweep, replicas)
    points = [{"temperature": t, "rate": r, "replica": k} for t in sweep["temperature"]
              for r in sweep["zip"][0]["rate"] for k in range(replicas)]
    # The arrays the default production fields write for one run (slab temperature, coordination,
    # a-CNA fractions, potential energy, MSD), at their declared dtypes: smooth in z, noisy in
    # time, so that they are like real fields.
    def run_arrays(seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        t, z = args.steps, args.slabs
        profile = 300 + 200 * np.exp(-np.arange(z) / 30.0)
        return {"slab_temperature": (profile + rng.normal(0, 15.0, (t, z))).astype(np.float32),
                "atoms_per_slab": rng.integers(30, 40, (t, z)).astype(np.float32),
                "coordination_mean": (8 + rng.normal(0, 0.2, (t, z))).astype(np.float32),
                "coordination_histogram": rng.dirichlet(np.ones(17), t).astype(np.float32),
                "structure_fraction": rng.dirichlet(np.ones(4), t).astype(np.float32),
                "structure_fraction_by_slab": rng.dirichlet(np.ones(4), (t, z)).astype(np.float32),
                "potential_energy": -1.9 + rng.normal(0, 1e-3, t),
                "potential_energy_by_slab": -1.9 + rng.normal(0, 1e-3, (t, z)),
                "msd": np.cumsum(rng.uniform(0, 0.1, (2, t)), axis=1),
                "diffusion_coefficient": rng.uniform(0, 1, 2)}

    dims = {"slab_temperature": ("time", "z"), "atoms_per_slab": ("time", "z"), "coordination_mean": ("time", "z"),
            "coordination_histogram": ("time", "coordination"), "structure_fraction": ("time", "structure"),
            "structure_fraction_by_slab": ("time", "z", "structure"), "potential_energy": ("time",),
            "potential_energy_by_slab": ("time", "z"), "msd": ("group", "lag"), "diffusion_coefficient": ("group",)}
    arrays = [run_arrays(k) for k in range(len(points))]
    megabytes = sum(a.nbytes for run in arrays for a in run.values()) / 1e6
    template = xr.Dataset({name: (dims[name], value) for name, value in arrays[0].items()},
                          coords={"time": np.arange(args.steps) * 0.1, "z": 5.0 + 10.0 * np.arange(args.slabs),
                                  "lag": np.arange(args.steps) * 0.1})
    work = Path(tempfile.mkdtemp(prefix="store-benchmark-"))
    try:
        started = time.perf_counter()
        fields.allocate_study(work / "fields.zarr", "deposition", axes, template)
        allocation = time.perf_counter() - started
        started = time.perf_counter()
        for point, run in zip(points, arrays):
            writer = fields.RunWriter(work / "fields.zarr", "deposition", point)
            writer.write(run, fields.RUN_COMPLETE, args.steps, {"task_id": "benchmark"})
        ours_write = time.perf_counter() - started
        files = [p for p in (work / "fields.zarr").rglob("*") if p.is_file()]
        per_run_files = sum(1 for p in files if p.name.startswith("c.") and "/deposition/" in str(p)) / len(points)
        per_run_bytes = sum(p.stat().st_size for p in files) / len(points)

        started = time.perf_counter()
        for k, run in enumerate(arrays):  # a script's layout: a directory per run, a file per array
            (work / "npy" / f"run{k}").mkdir(parents=True)
            for name, array in run.items():
                np.save(work / "npy" / f"run{k}" / f"{name}.npy", array)
        npy_write = time.perf_counter() - started

        started = time.perf_counter()
        data = fields.open_study(work / "fields.zarr", "deposition")
        steady = reduce.steady_state(data.slab_temperature, data.n_valid_time, 0.2)
        profile = reduce.replica_mean(steady.mean("time")).compute()
        ours_reduce = time.perf_counter() - started

        started = time.perf_counter()
        tail = int(round(0.2 * args.steps))
        loaded = np.array([np.load(work / "npy" / f"run{k}" / "slab_temperature.npy")[-tail:].mean(axis=0)
                           for k in range(len(points))])
        npy_profile = loaded.reshape(4, 3, replicas, args.slabs).mean(axis=2)
        npy_reduce = time.perf_counter() - started
        assert np.allclose(profile.values, npy_profile, rtol=1e-5)
    finally:
        shutil.rmtree(work)
    print(f"sweep: {len(points)} runs x {args.steps} frames x {args.slabs} slabs, the default fields' "
          f"{len(arrays[0])} arrays per run = {megabytes:.1f} MB")
    print(f"{'':12} {'write s':>9} {'write MB/s':>11} {'reduce s':>9}")
    print(f"{'zarr store':12} {ours_write:9.2f} {megabytes / ours_write:11.1f} {ours_reduce:9.2f}")
    print(f"{'plain .npy':12} {npy_write:9.2f} {megabytes / npy_write:11.1f} {npy_reduce:9.2f}")
    print(f"ratio ours/npy: write throughput {npy_write / ours_write:.2f}, reduce speed {npy_reduce / ours_reduce:.2f}")
    print(f"store: {per_run_files:.0f} chunk files and {per_run_bytes / 1e3:.0f} kB per run "
          f"({megabytes * 1e3 / len(points):.0f} kB of raw arrays); the study's allocation (metadata, once, "
          f"before the first run) {allocation * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
