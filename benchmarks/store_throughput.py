"""Write and reduce a 48-run x 2,000-step x 120-slab sweep: our store against plain .npy files.

Prints MB/s for both and the ratio ours/npy (write), and the time of a reduction
(last 20 % of time, mean over replicas -> (temperature, rate, z) profiles) on each.
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

from storage import fields, reduce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=48, help="4 temperatures x 3 rates x replicas")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--slabs", type=int, default=120)
    args = parser.parse_args()
    replicas = max(1, args.runs // 12)
    sweep = {"temperature": [100, 200, 300, 400], "zip": [{"rate": [1, 5, 20], "falling_speed": [1000, 5000, 20000]}]}
    axes = fields.SweepAxes.from_sweep(sweep, replicas)
    points = [{"temperature": t, "rate": r, "replica": k} for t in sweep["temperature"]
              for r in sweep["zip"][0]["rate"] for k in range(replicas)]
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(200, 800, (args.steps, args.slabs)) for _ in points]
    megabytes = sum(a.nbytes for a in arrays) / 1e6
    template = xr.Dataset({"slab_temperature": (("time", "z"), arrays[0], {"units": "K"})},
                          coords={"time": np.arange(args.steps) * 0.1, "z": 5.0 + 10.0 * np.arange(args.slabs)})
    work = Path(tempfile.mkdtemp(prefix="store-benchmark-"))
    try:
        started = time.perf_counter()
        fields.allocate_study(work / "fields.zarr", "deposition", axes, template)
        for point, array in zip(points, arrays):
            run = xr.Dataset({"slab_temperature": (("time", "z"), array)})
            fields.write_run(work / "fields.zarr", "deposition", axes, point, run)
        ours_write = time.perf_counter() - started

        started = time.perf_counter()
        (work / "npy").mkdir()
        for k, array in enumerate(arrays):
            np.save(work / "npy" / f"run{k}.npy", array)
        npy_write = time.perf_counter() - started

        started = time.perf_counter()
        data = fields.open_study(work / "fields.zarr", "deposition")
        profile = reduce.replica_mean(reduce.last_fraction(data.slab_temperature, 0.2).mean("time")).compute()
        ours_reduce = time.perf_counter() - started

        started = time.perf_counter()
        tail = int(round(0.2 * args.steps))
        loaded = np.array([np.load(work / "npy" / f"run{k}.npy")[-tail:].mean(axis=0) for k in range(len(points))])
        npy_profile = loaded.reshape(4, 3, replicas, args.slabs).mean(axis=2)
        npy_reduce = time.perf_counter() - started
        assert np.allclose(profile.values, npy_profile)
    finally:
        shutil.rmtree(work)
    print(f"sweep: {len(points)} runs x {args.steps} steps x {args.slabs} slabs = {megabytes:.1f} MB of float64")
    print(f"{'':12} {'write s':>9} {'write MB/s':>11} {'reduce s':>9}")
    print(f"{'zarr store':12} {ours_write:9.2f} {megabytes / ours_write:11.1f} {ours_reduce:9.2f}")
    print(f"{'plain .npy':12} {npy_write:9.2f} {megabytes / npy_write:11.1f} {npy_reduce:9.2f}")
    print(f"ratio ours/npy: write throughput {npy_write / ours_write:.2f}, reduce speed {npy_reduce / ours_reduce:.2f}")


if __name__ == "__main__":
    main()
