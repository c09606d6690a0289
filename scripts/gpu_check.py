"""Train one DeePMD member and run DeePMD MD on the GPU, and print the speed-up over the CPU.

For a machine with a CUDA GPU (a cluster's GPU node; the `device` tool where one is lent):
trains one se_e2_a member on the committed seed data (`data/li-seed/train`) for `--steps`
steps with `dp --pt train` on the GPU and on one CPU core, then runs 200 steps of NVT of a
2,000-atom bcc Li cell with the trained model through `tasks.md.run_md`, once with the GPU
visible and once without; prints seconds and the GPU/CPU ratio of each. Exits 1 without a
CUDA device.
Usage: python scripts/gpu_check.py [--steps 2000] [--atoms-cells 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys, time
from pathlib import Path
from tasks import build, md, train
from campaign.config import TrainSection
mode, work, steps, cells, model = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if mode == "train":
    section = TrainSection(steps=steps, decay_steps=max(1, steps // 20))
    systems = sorted(str(p) for p in Path("data/li-seed/train").iterdir())
    started = time.perf_counter()
    record = train.train_member(work, systems, [], ["Li"], 1, steps, section.descriptor.as_arguments(),
                                section.fitting_neuron, section.loss.model_dump(), decay_steps=section.decay_steps)
    print(json.dumps({"seconds": time.perf_counter() - started, "model": record.model_path}))
else:
    started = time.perf_counter()
    result = md.run_md(build.bcc_bulk(3.43, cells), md.Potential("deepmd", [model]), "nvt",
                       {"temperature": 300, "steps": 200, "trajectory_stride": 100}, work)
    print(json.dumps({"seconds": time.perf_counter() - started, "status": result.status,
                      "atom_steps_per_s": result.atom_steps_per_s}))
"""


def child(mode: str, work: Path, steps: int, cells: int, model: str, gpu: bool) -> dict:
    import json

    environment = dict(os.environ, DP_BACKEND="pytorch")
    if not gpu:
        environment["CUDA_VISIBLE_DEVICES"] = ""
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(work), str(steps), str(cells), model],
                          cwd=ROOT, env=environment, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--atoms-cells", type=int, default=10, help="bcc cells per side (2 atoms each)")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to compare")
        return 1
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        rows = {}
        for device, gpu in (("GPU", True), ("CPU", False)):
            trained = child("train", work / f"train-{device}", args.steps, 0, "", gpu)
            ran = child("md", work / f"md-{device}", 0, args.atoms_cells, trained["model"], gpu)
            rows[device] = (trained["seconds"], ran["seconds"], ran["atom_steps_per_s"])
        print(f"{torch.cuda.get_device_name(0)}; training {args.steps} steps, MD of "
              f"{2 * args.atoms_cells ** 3} atoms for 200 steps")
        for device, (train_s, md_s, rate) in rows.items():
            print(f"  {device}: training {train_s:.0f} s, MD {md_s:.1f} s ({rate:,.0f} atom-steps/s)")
        print(f"  GPU speed-up: training {rows['CPU'][0] / rows['GPU'][0]:.1f}x, MD {rows['GPU'][2] / rows['CPU'][2]:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
