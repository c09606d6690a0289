"""Whether the equation-of-state labels can pin the bulk modulus: their own P(V), and the same
perfect crystal labelled in a 2-atom and a 16-atom cell.

The members' bulk modulus misses by an error in pressure linear in volume on the unrattled
2-atom cells (docs/li-potential.md). Two things in the labels could cause it: noise in their
pressures (the SCF stops at 5e-4 eV per electron), or pressures that differ between cell sizes
at one volume (the k-point density gives a 2-atom cell 15³ points, a 16-atom cell 8³, which is
16³ of the 2-atom cell's). Part one fits Birch-Murnaghan to the pressures of the unrattled
`bulk2-v*-000` labels of an export (train and test) and prints the residuals; part two
(`--gpaw`) labels perfect bcc at 0.97, 1.00 and 1.03 V0 in both cells at the labels' settings
(the `gpaw` labeller of `configs/li-training-set.yaml`), and the 2-atom cell at 16³ and 24³.
One core; about 4 minutes for part two. With `--models`, each model's pressure on those labels
less theirs, and the B of a Birch-Murnaghan fit through its pressures at the labels' volumes
(0.96-1.04 V0), as the labels' own fit reads B.
Usage: python benchmarks/eos_labels.py [--data data/li-training-set] [--gpaw] [--models A.pth ...]
       [--output benchmarks/results/eos_labels.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from ase import Atoms
from scipy.optimize import OptimizeWarning, curve_fit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from campaign.config import load_config  # noqa: E402
from tasks import build  # noqa: E402
from tasks.label import read_labels  # noqa: E402
from tasks.labellers.gpaw import Gpaw, GpawSettings  # noqa: E402
from tasks.properties.calculators import deepmd_calculators  # noqa: E402
from tasks.properties.base import EV_PER_A3_IN_GPA  # noqa: E402

TRAINING_SET = ROOT / "configs" / "li-training-set.yaml"


def birch_murnaghan_pressure(volume: np.ndarray, v0: float, b: float, b_prime: float) -> np.ndarray:
    x = (v0 / volume) ** (2 / 3)
    return 1.5 * b * (x ** 3.5 - x ** 2.5) * (1 + 0.75 * (b_prime - 4) * (x - 1))


def eos_labels(data: Path) -> list[Path]:
    return sorted(data.glob("*/bulk2-v*-000"))


def pressure_gpa(atoms: Atoms) -> float:
    return -float(np.trace(atoms.get_stress(voigt=False))) / 3 * EV_PER_A3_IN_GPA


def label_pressures(data: Path) -> list[dict[str, float | str]]:
    """Volume per atom (Å³), pressure (GPa) and energy per atom (eV) of each unrattled EOS label."""
    rows = []
    for system in eos_labels(data):
        (atoms,) = read_labels(system)
        rows.append({"label": f"{system.parent.name}/{system.name}", "volume_per_atom": atoms.get_volume() / len(atoms),
                     "pressure_gpa": pressure_gpa(atoms), "energy_per_atom_ev": atoms.get_potential_energy() / len(atoms)})
    return sorted(rows, key=lambda row: row["volume_per_atom"])


def fitted(rows: list[dict[str, float | str]], lowest: float, highest: float) -> dict[str, object]:
    """Birch-Murnaghan through the pressures of the labels between `lowest` and `highest` V0."""
    volume = np.array([r["volume_per_atom"] for r in rows], dtype=float)
    pressure = np.array([r["pressure_gpa"] for r in rows], dtype=float)
    v0 = volume[np.argmin(abs(pressure))]
    warnings.simplefilter("ignore", OptimizeWarning)  # seven smooth labels: no covariance, an exact fit
    near = (volume >= lowest * v0) & (volume <= highest * v0)
    (v0, b, b_prime), _ = curve_fit(birch_murnaghan_pressure, volume[near], pressure[near], p0=[v0, 14.0, 3.5])
    residuals = pressure[near] - birch_murnaghan_pressure(volume[near], v0, b, b_prime)
    return {"range_v0": [lowest, highest], "v0_per_atom": v0, "bulk_modulus_gpa": b, "b_prime": b_prime,
            "residuals_gpa": dict(zip([r["label"] for r, n in zip(rows, near) if n], residuals.round(5).tolist()))}


def model_pressures(model: Path, data: Path, rows: list[dict[str, float | str]]) -> dict[str, object]:
    """The model's pressure less the label's on each EOS label, and its B through them."""
    calculator = deepmd_calculators(model)
    errors, pressures = {}, []
    for row in rows:
        (atoms,) = read_labels(data / str(row["label"]))
        atoms.calc = calculator(atoms, str(row["label"]))
        pressures.append(pressure_gpa(atoms))
        errors[str(row["label"])] = round(pressures[-1] - float(row["pressure_gpa"]), 5)
    fit = fitted([{**row, "pressure_gpa": p} for row, p in zip(rows, pressures)], 0.96, 1.04)
    return {"pressure_minus_label_gpa": errors, "bulk_modulus_gpa": fit["bulk_modulus_gpa"],
            "b_prime": fit["b_prime"]}


def gpaw_cells(lattice_constant: float) -> list[dict[str, object]]:
    """Perfect bcc at three volumes: 2-atom and 16-atom cells at the labels' k-point density, the
    2-atom cell at the 16-atom cell's equivalent mesh and at a denser one."""
    labels = load_config(TRAINING_SET).label.settings("gpaw")
    work_dir = Path(tempfile.mkdtemp(prefix="eos-labels-"))
    rows = []
    for scale in (0.97, 1.00, 1.03):
        for size, mesh in ((1, None), (2, None), (1, 16), (1, 24)):
            atoms = build.strained_bulk(volume_scale=scale, lattice_constant=lattice_constant, size=size)
            settings = GpawSettings.model_validate({**labels, "kpoint_mesh": (mesh,) * 3 if mesh else None})
            atoms.calc = Gpaw().calculator(atoms, settings, work_dir, f"{scale}-{size}-{mesh}")
            started = time.perf_counter()
            energy = atoms.get_potential_energy() / len(atoms)
            pressure = pressure_gpa(atoms)
            rows.append({"volume_scale": scale, "n_atoms": len(atoms), "mesh": list(settings.mesh(atoms)),
                         "pressure_gpa": pressure, "energy_per_atom_ev": energy,
                         "seconds": time.perf_counter() - started})
            print(f"{scale:.2f} V0, {len(atoms):2d} atoms, {rows[-1]['mesh'][0]:2d}³: P {pressure:+.4f} GPa, "
                  f"E {energy:.6f} eV/atom ({rows[-1]['seconds']:.0f} s)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "li-training-set")
    parser.add_argument("--gpaw", action="store_true", help="and label perfect bcc in both cell sizes")
    parser.add_argument("--models", type=Path, nargs="*", default=[], help="DeePMD models to set beside the labels")
    parser.add_argument("--lattice-constant", type=float, default=3.44, help="Å: the EOS labels' own")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "eos_labels.json")
    args = parser.parse_args()
    rows = label_pressures(args.data)
    for row in rows:
        print(f"{row['label']:28} {row['volume_per_atom']:8.4f} Å³  P {row['pressure_gpa']:+.4f} GPa  "
              f"E {row['energy_per_atom_ev']:.6f} eV/atom")
    fits = [fitted(rows, 0.85, 1.25), fitted(rows, 0.96, 1.04)]
    for fit in fits:
        worst = max(abs(r) for r in fit["residuals_gpa"].values())
        print(f"Birch-Murnaghan over {fit['range_v0'][0]}-{fit['range_v0'][1]} V0: B {fit['bulk_modulus_gpa']:.2f} "
              f"GPa, B' {fit['b_prime']:.2f}, largest residual {worst:.4f} GPa")
    result: dict[str, object] = {"data": str(args.data.relative_to(ROOT) if args.data.is_relative_to(ROOT)
                                              else args.data), "labels": rows, "fits": fits}
    if args.models:
        result["models"] = {str(m): model_pressures(m, args.data, rows) for m in args.models}
        for model, found in result["models"].items():
            print(f"{model}: B {found['bulk_modulus_gpa']:.2f} GPa; P − label (GPa) "
                  + " ".join(f"{e:+.4f}" for e in found["pressure_minus_label_gpa"].values()))
    if args.gpaw:
        result["gpaw_cells"] = gpaw_cells(args.lattice_constant)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
