"""GPAW's convergence for the properties of bcc Li: lattice constant, bulk modulus, C11, C12,
C44 and the (100)/(110)/(111) surface energies against the k-point density and the
plane-wave cutoff, each run through the property plug-ins (the same code as the property
stage's `gpaw` column), one core.

Usage: python benchmarks/gpaw_convergence.py [--kpoints 4 6 8 10 12] [--cutoffs 300 350 450 600]
       [--surface-kpoints 4 6 8] [--out benchmarks/results/gpaw_convergence.json]
The k-point scan is at 350 eV, the cutoff scan at the densest k-point density; each row
prints as it finishes, and the JSON keeps every row (the README's table is made from it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.properties import run_property  # noqa: E402
from tasks.properties.calculators import labeller_calculators  # noqa: E402

BULK = {"eos": {}, "elastic": {"size": 1, "strains": [0.005, 0.01]}}
SURFACES = {"facets": [[1, 0, 0], [1, 1, 0], [1, 1, 1]], "layers": [6], "vacuum_angstrom": 12.0}


def row(settings: dict, with_surfaces: bool, work_dir: Path) -> dict:
    calculators = labeller_calculators("gpaw", settings, work_dir)
    eos = run_property("eos", BULK["eos"], calculators)
    a0 = eos.value("lattice_constant").value
    results = [eos, run_property("elastic", {**BULK["elastic"], "lattice_constant_angstrom": a0}, calculators)]
    if with_surfaces:
        results.append(run_property("surface_energies", {**SURFACES, "lattice_constant_angstrom": a0}, calculators))
    values = {v.component: v.value for r in results for v in r.values}
    return {"settings": settings, "values": values, "seconds": {r.property: r.wall_time_s for r in results}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kpoints", type=float, nargs="+", default=[4, 6, 8, 10, 12])
    parser.add_argument("--cutoffs", type=float, nargs="+", default=[300, 350, 450, 600])
    parser.add_argument("--surface-kpoints", type=float, nargs="*", default=[4, 6, 8])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gpaw_convergence.json")
    args = parser.parse_args()
    rows = []
    shown = ["lattice_constant", "bulk_modulus", "C11", "C12", "C44", "surface_energy_100", "surface_energy_110",
             "surface_energy_111"]
    print("| k-points per Å⁻¹ | cutoff (eV) | " + " | ".join(shown) + " | seconds |")
    print("|" + "---|" * (len(shown) + 3))
    scans = [({"kpoint_density_per_angstrom": k, "cutoff_ev": 350.0}, k in args.surface_kpoints)
             for k in args.kpoints]
    scans += [({"kpoint_density_per_angstrom": max(args.kpoints), "cutoff_ev": c}, False) for c in args.cutoffs
              if c != 350.0]
    with tempfile.TemporaryDirectory() as scratch:
        for settings, with_surfaces in scans:
            result = row(settings, with_surfaces, Path(scratch))
            rows.append(result)
            values = result["values"]
            cells = [f"{values[c]:.4g}" if c in values else "-" for c in shown]
            print(f"| {settings['kpoint_density_per_angstrom']:g} | {settings['cutoff_ev']:g} | " + " | ".join(cells)
                  + f" | {sum(result['seconds'].values()):.0f} |", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
