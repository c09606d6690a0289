"""MD speed of tasks.md against the bare `lmp` binary on the same input (2,000-atom bcc Li, NVT).

`run_md` writes the LAMMPS script it executed (`in.lammps`, each run command with its
pre/post flags); the baseline replays that very script with `lmp` on the same number of
ranks, so both runs do the same work, setups and frames included. Our 1-rank run is
in-process (as in a Parsl worker); our 2-rank run is `run_md(params={"mpi_ranks": 2})`,
which starts `mpirun -np 2 python -m tasks.md` and gathers each frame from both ranks. Prints atom-steps/s for SNAP, MEAM, and a DeePMD model
plain and compressed, and the ratio ours/bare (the target is >= 0.97). Throughput is from
LAMMPS's own loop timers ("Loop time" in each log), so neither side is charged for process
start-up (a bare `lmp` loads the DeePMD plugin, and with it torch, at every start); the
wall-clock ratio is printed too.

Usage: python benchmarks/md_throughput.py [--steps 300] [--model model.pth] [--potentials snap meam deepmd]
           [--ranks 1 2] [--repeat 3]
Without --model a small DeePMD model is trained on SNAP labels first (about 2 minutes).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tasks import build, label, md, train
from tasks.runtime import child_environment


def small_model(work: Path) -> str:
    frames = [build.rattled(build.bcc_bulk(a, 2), 0.08, i) for i, a in enumerate([3.40, 3.45, 3.51] * 10)]
    data = label.label_structures(frames, "reference", {"potential": "snap"}, work / "labels")
    record = train.train_member(work / "model", data.system_dirs, [], ["Li"], seed=1, steps=300,
                                descriptor={"rcut_angstrom": 6.0, "rcut_smooth_angstrom": 5.0, "sel": [60],
                                            "neuron": [10, 20, 40], "axis_neuron": 8},
                                fitting_neuron=[60, 60, 60], loss={"start_pref_e": 0.02, "limit_pref_e": 1.0,
                                                                   "start_pref_f": 1000.0, "limit_pref_f": 1.0,
                                                                   "start_pref_v": 0.0, "limit_pref_v": 0.0},
                                decay_steps=100, compress=True)
    return record.model_path


def loop_seconds(log: Path) -> float:
    """Sum of LAMMPS's "Loop time of X on N procs" lines (time spent integrating)."""
    return sum(float(line.split()[3]) for line in log.read_text().splitlines() if line.startswith("Loop time of"))


def bare_lammps(script: Path, ranks: int, preload_torch: bool = False) -> tuple[float, float]:
    """(loop seconds, wall seconds) of the script run by the bare binary.

    `preload_torch` loads libtorch before LAMMPS starts (LD_PRELOAD), as our Python process
    does by importing torch; the binary otherwise loads it late, when `pair_style deepmd`
    loads the DeePMD plugin, and then the same DeePMD script ran 1.3-1.8x slower (measured;
    preloading only CUDA's runtime, as the `lmp` wrapper does, did not change that).
    """
    log = script.parent / f"bare-{ranks}{'-preload' if preload_torch else ''}.log"
    command = ["lmp", "-in", script.name, "-log", log.name, "-screen", "none", "-nocite"]
    if ranks > 1:
        command = ["mpirun", "-np", str(ranks), *command]
    torch_lib = Path(importlib.util.find_spec("torch").origin).parent / "lib"
    extra = {"LD_PRELOAD": str(torch_lib / "libtorch_cpu.so")} if preload_torch else {}
    started = time.perf_counter()
    subprocess.run(command, cwd=script.parent, env=child_environment(extra), check=True)
    return loop_seconds(log), time.perf_counter() - started


def main() -> None:
    # Our MD runs in Parsl workers started with the thread and malloc settings of tasks.runtime;
    # glibc reads GLIBC_TUNABLES only at process start, so this process restarts itself with them.
    environment = child_environment()
    if os.environ.get("GLIBC_TUNABLES") != environment["GLIBC_TUNABLES"]:
        os.execve(sys.executable, [sys.executable, *sys.argv], environment)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--model", help="a frozen DeePMD .pth model (its compressed twin is made if missing)")
    parser.add_argument("--potentials", nargs="+", default=["snap", "meam", "deepmd", "deepmd-compressed"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs on each side")
    args = parser.parse_args()
    atoms = build.bcc_bulk(3.51, 10)
    with tempfile.TemporaryDirectory(prefix="md-benchmark-") as directory:
        work = Path(directory)
        models: dict[str, str] = {}
        if any(p.startswith("deepmd") for p in args.potentials):
            model = args.model or small_model(work)
            compressed = Path(model).with_name("model-compressed.pth")
            if not compressed.exists():
                subprocess.run(["dp", "--pt", "compress", "-i", model, "-o", str(compressed)], cwd=work,
                               env=child_environment(), check=True, capture_output=True)
            models = {"deepmd": model, "deepmd-compressed": str(compressed)}
        print(f"{len(atoms)} atoms, {args.steps} steps, NVT Langevin 300 K, frames every 100 steps")
        print(f"{'potential':18} {'ranks':>5} {'ours':>10} {'bare':>10} {'ratio':>7} {'wall ratio':>11} "
              f"{'bare, torch preloaded':>22} {'ratio':>7}   (atom-steps/s from loop timers)")
        for name in args.potentials:
            potential = md.Potential("deepmd", [models[name]]) if name.startswith("deepmd") else md.Potential(name)
            for ranks in args.ranks:
                # Best of --repeat for each side, alternating, so that a slow spell of the machine
                # does not land on one side only (single runs varied by up to 10 %).
                ours_loop, bare, preloaded, ours_wall, bare_wall = (float("inf"),) * 5
                for repeat in range(args.repeat):
                    out = work / name / f"ranks-{ranks}-{repeat}"
                    started = time.perf_counter()
                    result = md.run_md(atoms, potential, "nvt", {"temperature": 300, "steps": args.steps,
                                                                 "trajectory_stride": 100, "mpi_ranks": ranks}, out)
                    if result.status != "ok":
                        break
                    ours_wall = min(ours_wall, time.perf_counter() - started)
                    ours_loop = min(ours_loop, loop_seconds(out / "log.lammps"))
                    loop, wall = bare_lammps(out / "in.lammps", ranks)
                    bare, bare_wall = min(bare, loop), min(bare_wall, wall)
                    if name.startswith("deepmd"):
                        preloaded = min(preloaded, bare_lammps(out / "in.lammps", ranks, preload_torch=True)[0])
                if result.status != "ok":
                    print(f"{name:18} {ranks:5} failed: {result.reason}")
                    continue
                work_done = len(atoms) * args.steps
                line = (f"{name:18} {ranks:5} {work_done / ours_loop:10.0f} {work_done / bare:10.0f} "
                        f"{bare / ours_loop:7.3f} {bare_wall / ours_wall:11.2f}")
                if name.startswith("deepmd"):
                    line += f" {work_done / preloaded:22.0f} {preloaded / ours_loop:7.3f}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
