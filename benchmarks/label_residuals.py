"""Where a member misses its own labels, by kind of structure: the mean energy error and how
stiff its shear stresses are against the labels'.

For every label of `<data>` (a `campaign export`: train/ and test/), grouped by the system it
was built from (an iteration's picks by atom count): the model's energy minus the label's
(meV/atom, mean and RMS), and for the labels with a virial the model's pressure minus the
label's (GPa, mean and RMS: a bulk modulus off by 3 % is 0.01 GPa at 1 % of volume) and the
least-squares slope of the labels' off-diagonal virials against the model's (below 1: the
model's shear stresses are larger than DFT's, as a too stiff C44 makes them). A group whose
energies or pressures sit off by a constant is one the network does not fit beside the others.
Usage: python benchmarks/label_residuals.py MODEL.pth [--data data/li-training-set]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from campaign.stages import system_of  # noqa: E402
from tasks.label import read_labels  # noqa: E402
from tasks.properties.base import EV_PER_A3_IN_GPA  # noqa: E402
from tasks.runtime import prepare_process  # noqa: E402

OFF_DIAGONAL = [(0, 1), (0, 2), (1, 2)]


def group_of(label_name: str, n_atoms: int) -> str:
    """`bulk2-shear-xy2-000` → `bulk2-shear`; an iteration's pick → `pick-<atoms>`."""
    system = system_of(label_name)
    if system.startswith("iter"):
        return f"pick-{n_atoms}"
    return system.split("-")[0] + ("-shear" if "shear" in system else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "li-training-set")
    args = parser.parse_args()
    prepare_process()
    from deepmd.infer import DeepPot

    model = DeepPot(str(args.model))
    energies: dict[str, list[float]] = defaultdict(list)
    virials: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    pressures: dict[str, list[float]] = defaultdict(list)
    for part in ("train", "test"):
        for system in sorted((args.data / part).iterdir()):
            frames = read_labels(system)
            n_atoms = len(frames[0])
            coord = np.array([atoms.positions.ravel() for atoms in frames])
            box = np.array([atoms.cell.array.ravel() for atoms in frames]) if frames[0].pbc.all() else None
            energy, _, virial = model.eval(coord, box, [0] * n_atoms)[:3]
            group = group_of(system.name, n_atoms)
            labelled_energy = np.array([atoms.get_potential_energy() for atoms in frames])
            energies[group] += list(1000 * (energy.ravel() - labelled_energy) / n_atoms)
            for atoms, predicted in zip(frames, virial):
                if "stress" in atoms.calc.results:
                    labelled = -atoms.get_stress(voigt=False) * atoms.get_volume()  # DeePMD's virial
                    predicted = predicted.reshape(3, 3)
                    pressures[group].append(EV_PER_A3_IN_GPA * np.trace(predicted - labelled)
                                            / (3 * atoms.get_volume()))
                    virials[group][0].extend(1000 * labelled[i, j] / n_atoms for i, j in OFF_DIAGONAL)
                    virials[group][1].extend(1000 * predicted[i, j] / n_atoms for i, j in OFF_DIAGONAL)
    print(f"model {args.model}; data {args.data}")
    print(f"{'group':14} {'labels':>6} {'E mean':>7} {'E rms':>6}  {'virials':>7} {'P mean':>7} {'P rms':>6} "
          f"{'slope':>6}  (model − label: meV/atom, GPa; slope of the labels' off-diagonal virials on the "
          "model's)")
    for group in sorted(energies):
        errors = np.array(energies[group])
        line = f"{group:14} {len(errors):6d} {errors.mean():7.2f} {np.sqrt(np.mean(errors ** 2)):6.2f}"
        labelled, predicted = (np.array(v) for v in virials.get(group, ([], [])))
        if len(labelled) and predicted @ predicted > 1e-12:
            pressure = np.array(pressures[group])
            line += (f"  {len(labelled) // 3:7d} {pressure.mean():7.3f} {np.sqrt(np.mean(pressure ** 2)):6.3f} "
                     f"{float(labelled @ predicted / (predicted @ predicted)):6.2f}")
        print(line)


if __name__ == "__main__":
    main()
