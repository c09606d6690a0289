"""DeePMD-kit's TensorFlow backend against its PyTorch backend on the same model: accuracy and MD speed.

The TensorFlow backend (tensorflow-cpu 2.21.0, what `deepmd-kit[cpu]` pins) is installed beside
the PyTorch stack by `make tensorflow-backend`. The model (default: the committed seed member
`data/li-seed/models/member-0.pth`, trained with PyTorch on GPAW labels) is converted with
`dp convert-backend` to `.pb`, and each of the two is compressed by its own backend's
`dp compress`. The converter keeps only the `model` part of the training script stored in the
graph, and TensorFlow's `dp compress` needs a complete one; a minimal script (learning rate
and loss; no data) is written back into the graph first.

For each of the four models it prints the energy-per-atom and largest force difference from
the PyTorch model on a rattled 128-atom bcc frame, and the MD speed of `tasks.md.run_md`
(NVT 300 K, bcc Li, 1 rank, atom-steps/s from LAMMPS's loop timers) with the ratio
TensorFlow / PyTorch.

Usage: make tensorflow-backend && .venv/bin/python benchmarks/deepmd_backends.py [--model M.pth] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from md_throughput import loop_seconds
from tasks import build, md
from tasks.runtime import child_environment

ROOT = Path(__file__).resolve().parents[1]
TENSORFLOW_SITE = ROOT / ".venv" / "tensorflow-site"


def restore_training_script(model: Path, output: Path) -> None:
    """Copy of a converted `.pb` whose stored training script `dp --tf compress` accepts."""
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(model.read_bytes())
    for node in graph.node:
        if node.name == "train_attr/training_script":
            stored = json.loads(node.attr["value"].tensor.string_val[0])
            script = {"model": stored["model"], "loss": {"type": "ener"},
                      "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-8, "decay_steps": 100},
                      "training": {"numb_steps": 0, "training_data": {"systems": []}}}
            node.attr["value"].tensor.string_val[0] = json.dumps(script).encode()
    output.write_bytes(graph.SerializeToString())


def dp(*arguments: str, cwd: Path) -> None:
    subprocess.run(["dp", *arguments], cwd=cwd, check=True, capture_output=True)


def prepare_models(source: Path, work: Path) -> dict[str, Path]:
    models = {"pytorch": work / "model.pth", "pytorch compressed": work / "model-compressed.pth",
              "tensorflow": work / "model.pb", "tensorflow compressed": work / "model-compressed.pb"}
    shutil.copy(source, models["pytorch"])
    dp("--pt", "compress", "-i", "model.pth", "-o", "model-compressed.pth", cwd=work)
    dp("convert-backend", "model.pth", "model.pb", cwd=work)
    restore_training_script(models["tensorflow"], work / "model-script.pb")
    dp("--tf", "compress", "-i", "model-script.pb", "-o", "model-compressed.pb", cwd=work)
    return models


def differences(models: dict[str, Path]) -> dict[str, tuple[float, float]]:
    """(energy per atom in eV, largest force component in eV/Å) of each model minus the PyTorch one."""
    from deepmd.infer import DeepPot

    atoms = build.rattled(build.bcc_bulk(3.51, 4), 0.1, 3)
    arguments = (atoms.positions.reshape(1, -1), atoms.cell.array.reshape(1, -1), [0] * len(atoms))
    results = {name: DeepPot(str(path)).eval(*arguments)[:2] for name, path in models.items()}
    energy, forces = results["pytorch"]
    return {name: (float((e - energy).ravel()[0]) / len(atoms), float(np.abs(f - forces).max()))
            for name, (e, f) in results.items()}


def main() -> None:
    environment = child_environment({"PYTHONPATH": os.pathsep.join([str(TENSORFLOW_SITE), str(ROOT)])})
    if os.environ.get("PYTHONPATH") != environment["PYTHONPATH"]:
        os.execve(sys.executable, [sys.executable, *sys.argv], environment)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "li-seed" / "models" / "member-0.pth")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=10, help="bcc cells per side (2 atoms each)")
    args = parser.parse_args()
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        sys.exit(f"TensorFlow not found in {TENSORFLOW_SITE}: run `make tensorflow-backend` first")
    atoms = build.bcc_bulk(3.51, args.size)
    with tempfile.TemporaryDirectory(prefix="deepmd-backends-") as directory:
        work = Path(directory)
        models = prepare_models(args.model, work)
        error = differences(models)
        print(f"model {args.model}; MD: {len(atoms)} atoms, {args.steps} steps, NVT 300 K, 1 rank")
        print(f"{'backend':22} {'dE (meV/atom)':>14} {'max dF (eV/Å)':>14} {'atom-steps/s':>13} {'TF/PT':>7}")
        speed: dict[str, float] = {}
        for name, path in models.items():
            out = work / name.replace(" ", "-")
            result = md.run_md(atoms, md.Potential("deepmd", [str(path)]), "nvt",
                               {"temperature": 300, "steps": args.steps, "trajectory_stride": 100}, out)
            if result.status != "ok":
                print(f"{name:22} failed: {result.reason}")
                continue
            speed[name] = len(atoms) * args.steps / loop_seconds(out / "log.lammps")
            twin = speed.get(name.replace("tensorflow", "pytorch"))
            ratio = f"{speed[name] / twin:7.2f}" if name.startswith("tensorflow") and twin else ""
            print(f"{name:22} {1000 * error[name][0]:14.3f} {error[name][1]:14.2e} {speed[name]:13.0f} {ratio}",
                  flush=True)


if __name__ == "__main__":
    main()
