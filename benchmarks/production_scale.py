"""A production study of 1,000 runs end to end through `campaign run`, and the same at 100 runs.

25 temperatures x 40 replicas (x 4 at 100 runs) of NVT on 128-atom bcc Li with MEAM (the
classical stand-in), 1,000 steps, the default fields plus the RDF, on the local Parsl HTEX.
Reports, side by side for 100 and 1,000 runs:

* the time from the start to the last run written into the store against the time to the
  last MD run finished (the status chunk, written last, against the MD's end in the run's
  provenance): target <= 1.05, the driver wrote the whole store after the last run before;
* the driver's peak resident memory (VmHWM of the `campaign run` process): target flat
  within 20 % from 100 to 1,000 runs;
* the store's write throughput as the workers measured it (result.json `store_write_s`)
  against `np.save` of the same arrays (a run's arrays read back from the store), target >= 0.5;
* files and bytes per run, in the store and in the run directories.

Usage: python benchmarks/production_scale.py [--replicas 40] [--small-replicas 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage import open_campaign  # noqa: E402

TEMPERATURES = list(range(100, 1300, 50))  # 24 values ...
TEMPERATURES.append(1275)  # ... and a 25th


def config(workdir: Path, replicas: int, workers: int) -> dict:
    return {
        "campaign": {"name": "scale", "workdir": str(workdir), "seed": 1},
        "executors": {"cpu": {"max_workers": 1}, "gpu": {"max_workers": workers}},
        "systems": [{"name": "bulk128", "builder": "bulk", "params": {"lattice_constant": 3.51, "size": 4}}],
        "production": [{"name": "nvt", "protocol": "nvt", "systems": ["bulk128"], "potential": "meam",
                        "params": {"steps": 1000, "trajectory_stride": 100},
                        "sweep": {"temperature": TEMPERATURES}, "replicas": replicas,
                        "fields": ["slab_temperature", "coordination", "msd", "structure_fractions",
                                   "potential_energy", "rdf"]}],
        "analysis": {"dashboard_port": 0},
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(work: Path, replicas: int, workers: int) -> dict[str, float]:
    workdir = work / f"runs-{replicas}"
    path = work / f"scale-{replicas}.yaml"
    path.write_text(yaml.safe_dump(config(workdir, replicas, workers)))
    started = time.time()
    driver = subprocess.Popen([sys.executable, "-m", "campaign.cli", "run", str(path)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while driver.poll() is None:
        try:
            peak = max(peak, peak_rss_mb(driver.pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.5)
    if driver.returncode:
        raise RuntimeError(driver.stderr.read()[-3000:])
    campaign = open_campaign(workdir)
    provenance = campaign.provenance("nvt")
    study = workdir / "fields.zarr" / "nvt"
    last_md = float(provenance.md_finished_at.max()) - started
    last_written = max(p.stat().st_mtime for p in (study / "run_status").glob("c.*")) - started
    results = [json.loads(p.read_text()) for p in (workdir / "production").rglob("result.json")]
    write_s = sum(r["store_write_s"] for r in results)
    data = campaign.fields("nvt")
    one = data.isel(temperature=0, replica=0).load()
    arrays = {name: np.asarray(one[name].values) for name in one.data_vars if one[name].dtype.kind in "fiu"}
    scratch = work / "npy"
    scratch.mkdir(exist_ok=True)
    npy_started = time.perf_counter()
    for name, array in arrays.items():
        np.save(scratch / f"{name}.npy", array)
    npy_s = (time.perf_counter() - npy_started) * len(results)
    store_files = [p for p in study.rglob("*") if p.is_file()]
    run_files = [p for p in (workdir / "production").rglob("*") if p.is_file()]
    n = len(results)
    return {"runs": n, "ok": int((data.run_status == 1).sum()), "last_md_s": last_md, "last_written_s": last_written,
            "peak_rss_mb": peak, "store_write_s": write_s, "npy_s": npy_s,
            "store_files": sum(1 for p in store_files if p.name.startswith("c.")) / n,
            "store_kb": sum(p.stat().st_size for p in store_files) / n / 1e3,
            "run_files": len(run_files) / n, "run_kb": sum(p.stat().st_size for p in run_files) / n / 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=40)
    parser.add_argument("--small-replicas", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="production-scale-"))
    try:
        rows = [measure(work, r, args.workers) for r in (args.small_replicas, args.replicas)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    small, large = rows
    print(f"NVT of 128-atom bcc Li (MEAM), 1,000 steps, 6 fields; {args.workers} HTEX workers")
    print(f"{'':38} {small['runs']:>10} runs {large['runs']:>10} runs")
    lines = [("runs complete", "ok", "{:.0f}"), ("last MD run finished (s)", "last_md_s", "{:.1f}"),
             ("last run written into the store (s)", "last_written_s", "{:.1f}"),
             ("driver peak RSS (MB)", "peak_rss_mb", "{:.0f}"), ("store chunk files per run", "store_files", "{:.0f}"),
             ("store kB per run", "store_kb", "{:.0f}"), ("run-directory files per run", "run_files", "{:.0f}"),
             ("run-directory kB per run", "run_kb", "{:.0f}")]
    for label, key, form in lines:
        print(f"{label:38} {form.format(small[key]):>15} {form.format(large[key]):>15}")
    for row in rows:
        row["written_over_md"] = row["last_written_s"] / row["last_md_s"]
        row["write_vs_npy"] = row["npy_s"] / row["store_write_s"]
    print(f"{'last written / last MD (target <= 1.05)':38} {small['written_over_md']:>15.3f} "
          f"{large['written_over_md']:>15.3f}")
    print(f"{'store write vs np.save (target >= 0.5)':38} {small['write_vs_npy']:>15.2f} {large['write_vs_npy']:>15.2f}")
    print(f"driver peak RSS, 1,000 runs over 100: {large['peak_rss_mb'] / small['peak_rss_mb']:.2f} "
          f"(target: flat within 20 %)")


if __name__ == "__main__":
    main()
