"""Whether members fit their own strain labels: the elastic response each strained label says
against what each model says of the same cell.

For every unrattled strained 2-atom label of `<data>` (a `campaign export`; the systems of
`configs/li-training-set.yaml` with a `strain_voigt`) the stress relative to the unstrained
cell's label gives one constant: C44 = Δσ_yz / γ_yz for the trigonal shears, C11 − C12 =
(Δσ_xx − Δσ_yy) / (ε_xx − ε_yy) for the volume-conserving orthorhombic and tetragonal strains.
The same for each model's stresses on the same cells. A label whose constant is far from the
GPAW column's (computed at one k-point mesh for every strain) is noise, not elasticity.
Usage: python benchmarks/elastic_labels.py [--data data/li-training-set] [--models M.pth ...]
       [--output benchmarks/results/elastic_labels.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from campaign.config import load_config  # noqa: E402
from loss_balance import GPAW as GPAW_COLUMN  # noqa: E402  (this script's folder is on the path)
from tasks.label import read_labels  # noqa: E402
from tasks.properties.base import EV_PER_A3_IN_GPA  # noqa: E402
from tasks.runtime import prepare_process  # noqa: E402

#: GPAW at the labels' settings, one mesh for every strain (README, "The property acceptance")
GPAW = {"C44": GPAW_COLUMN["C44"], "C11-C12": GPAW_COLUMN["C11"] - GPAW_COLUMN["C12"]}


def label_system(data: Path, name: str) -> Path | None:
    """The unrattled copy (`-000`) of a labelled system, in train/ or test/."""
    found = sorted(data.glob(f"*/{name}-000"))
    return found[0] if found else None


def stress_gpa(virial_ev: np.ndarray, box: np.ndarray) -> np.ndarray:
    """ASE's sign (tension positive) from DeePMD's virial (−σ V)."""
    return -virial_ev.reshape(3, 3) / abs(np.linalg.det(box.reshape(3, 3))) * EV_PER_A3_IN_GPA


def constant(strain: list[float], stress: np.ndarray) -> tuple[str, float]:
    """The one constant a strain of these two kinds measures, from its stress change (GPa)."""
    e = np.asarray(strain)
    if np.any(e[3:]):
        shears = [(stress[1, 2], e[3]), (stress[0, 2], e[4]), (stress[0, 1], e[5])]
        return "C44", float(np.mean([sigma / gamma for sigma, gamma in shears if gamma]))
    i, j = (0, 1) if e[0] != e[1] else (0, 2)
    return "C11-C12", float((stress[i, i] - stress[j, j]) / (e[i] - e[j]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "li-training-set")
    parser.add_argument("--models", type=Path, nargs="*", help="default: <data>/models/member-*.pth")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "elastic_labels.json")
    args = parser.parse_args()
    models = args.models or sorted((args.data / "models").glob("member-*.pth"))
    prepare_process()
    from deepmd.infer import DeepPot

    potentials = {str(m.relative_to(ROOT) if m.is_relative_to(ROOT) else m): DeepPot(str(m)) for m in models}
    config = load_config(ROOT / "configs" / "li-training-set.yaml")
    reference = label_system(args.data, "bulk2-v100")

    def stresses(system: Path) -> dict[str, np.ndarray]:
        atoms = read_labels(system)[0]
        out = {"label": atoms.get_stress(voigt=False) * EV_PER_A3_IN_GPA}
        coord, box = atoms.positions.reshape(1, -1), atoms.cell.array.reshape(1, -1)
        for name, potential in potentials.items():
            virial = potential.eval(coord, box, [0] * len(atoms))[2]
            out[name] = stress_gpa(virial[0], box[0])
        return out

    unstrained = stresses(reference)
    rows = []
    for system in config.systems:
        strain = system.params.get("strain_voigt")
        labelled = label_system(args.data, system.name)
        if system.builder != "strained_bulk" or not strain or labelled is None:
            continue
        strained = stresses(labelled)
        implied = {source: constant(strain, strained[source] - unstrained[source]) for source in strained}
        rows.append({"system": system.name, "strain_voigt": strain, "constant": implied["label"][0],
                     "gpa": {source: value for source, (_, value) in implied.items()}})
    print(f"GPa; GPAW column (one mesh): C44 {GPAW['C44']}, C11-C12 {GPAW['C11-C12']:.1f}")
    for number, name in enumerate(potentials):
        print(f"model {number}: {name}")
    print(f"{'label':18} {'constant':8} {'label':>7} " + " ".join(f"{f'model {n}':>8}" for n in range(len(potentials))))
    for row in rows:
        print(f"{row['system']:18} {row['constant']:8} {row['gpa']['label']:7.2f} "
              + " ".join(f"{row['gpa'][n]:8.2f}" for n in potentials))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"data": str(args.data), "gpaw": GPAW, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
