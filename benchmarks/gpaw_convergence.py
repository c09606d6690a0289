"""GPAW's convergence for the properties of bcc Li: lattice constant, bulk modulus, C11, C12,
C44 and the (100)/(110)/(111) surface energies against the k-point density, the
plane-wave cutoff and the Methfessel-Paxton smearing width, each run through the property plug-ins (the same code as the property
stage's `gpaw` column), one core.

Usage: python benchmarks/gpaw_convergence.py [--kpoints 4 6 8 10 12] [--cutoffs 300 350 450 600]
       [--cutoff-kpoints 10] [--surface-kpoints 4 6 8] [--widths 0.4] [--width-kpoints 4 6 10]
       [--out benchmarks/results/gpaw_convergence.json]
The k-point scan is at 350 eV and 0.2 eV smearing, the cutoff scan at the densest k-point
density; the width scan (at 350 eV) asks whether a wider smearing converges the shear
constants at fewer k-points, which is what labels of large cells can afford. Each row
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
    parser.add_argument("--kpoints", type=float, nargs="*", default=[4, 6, 8, 10, 12])
    parser.add_argument("--cutoffs", type=float, nargs="*", default=[300, 350, 450, 600])
    parser.add_argument("--cutoff-kpoints", type=float, help="k-point density of the cutoff scan (default: the "
                                                               "densest of --kpoints)")
    parser.add_argument("--surface-kpoints", type=float, nargs="*", default=[4, 6, 8])
    parser.add_argument("--widths", type=float, nargs="*", default=[], help="eV, smearing widths to scan")
    parser.add_argument("--width-kpoints", type=float, nargs="*", default=[4, 6, 10])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gpaw_convergence.json")
    args = parser.parse_args()
    # rows of earlier scans stay unless this one recomputes their settings
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    shown = ["lattice_constant", "bulk_modulus", "C11", "C12", "C44", "surface_energy_100", "surface_energy_110",
             "surface_energy_111"]
    print("| k-points per Å⁻¹ | cutoff (eV) | smearing (eV) | " + " | ".join(shown) + " | seconds |")
    print("|" + "---|" * (len(shown) + 4))
    scans = [({"kpoint_density_per_angstrom": k, "cutoff_ev": 350.0}, k in args.surface_kpoints)
             for k in args.kpoints]
    cutoff_kpoints = args.cutoff_kpoints or max(args.kpoints, default=None)
    scans += [({"kpoint_density_per_angstrom": cutoff_kpoints, "cutoff_ev": c}, False) for c in args.cutoffs
              if c != 350.0 and cutoff_kpoints]
    scans += [({"kpoint_density_per_angstrom": k, "cutoff_ev": 350.0, "smearing_width_ev": w}, False)
              for w in args.widths for k in args.width_kpoints]
    with tempfile.TemporaryDirectory() as scratch:
        for settings, with_surfaces in scans:
            result = row(settings, with_surfaces, Path(scratch))
            rows = [r for r in rows if r["settings"] != settings] + [result]
            values = result["values"]
            cells = [f"{values[c]:.4g}" if c in values else "-" for c in shown]
            width = settings.get("smearing_width_ev", 0.2)
            print(f"| {settings['kpoint_density_per_angstrom']:g} | {settings['cutoff_ev']:g} | {width:g} | "
                  + " | ".join(cells)
                  + f" | {sum(result['seconds'].values()):.0f} |", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
