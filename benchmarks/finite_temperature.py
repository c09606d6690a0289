"""The finite-temperature properties of one potential, their values and seconds each.

thermal_expansion (a(T), α, B_T, bcc fraction), elastic_at_temperature and self_diffusion of
the melt, at settings sized for a CPU (one process, one core): a 54-atom box, 2 fs steps.
The property defaults (432 atoms, 1 fs, 5-10 ps averages) are what a study should run.
Usage: python benchmarks/finite_temperature.py [--potential snap | MODEL.pth]
       [--expansion-k 2 50 100 200 300 400] [--elastic-k 300] [--diffusion-k 500 700]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.properties import run_property  # noqa: E402
from tasks.properties.calculators import PropertyPotential  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--potential", default="snap", help="a classical potential's name or a DeePMD model file")
    parser.add_argument("--expansion-k", type=float, nargs="*", default=[2, 50, 100, 200, 300, 400])
    parser.add_argument("--elastic-k", type=float, nargs="*", default=[300])
    parser.add_argument("--diffusion-k", type=float, nargs="*", default=[500, 700])
    parser.add_argument("--cells", type=int, default=3)
    args = parser.parse_args()
    kind = "deepmd" if args.potential.endswith((".pth", ".pb")) else "classical"
    potential = PropertyPotential(args.potential, kind, args.potential)
    calculators, pair = potential.calculators(ROOT / "runs"), potential.pair_commands()
    a0 = run_property("eos", {}, calculators).value("lattice_constant").value
    common = {"cells": (args.cells,) * 3, "timestep_fs": 2, "lattice_constant_angstrom": a0}
    runs = {
        "thermal_expansion": ({**common, "temperatures_k": args.expansion_k, "equilibrate_ps": 1, "settle_ps": 0.5,
                               "average_ps": 3, "samples": 60}, args.expansion_k),
        "elastic_at_temperature": ({**common, "temperatures_k": args.elastic_k, "equilibrate_ps": 1,
                                    "settle_ps": 0.5, "average_ps": 5, "samples": 100}, args.elastic_k),
        "self_diffusion": ({**common, "temperatures_k": args.diffusion_k, "melt_ps": 2, "equilibrate_ps": 2,
                            "run_ps": 5, "samples": 100, "r_max_angstrom": 5.0}, args.diffusion_k)}
    print(f"{args.potential}: static lattice constant {a0:.4f} Å, {2 * args.cells ** 3} atoms, 2 fs")
    for name, (params, temperatures) in runs.items():
        if not temperatures:
            continue
        result = run_property(name, params, calculators, pair)
        print(f"\n{name} ({result.wall_time_s:.0f} s):")
        for value in result.values:
            error = f" ± {value.uncertainty:.2g}" if value.uncertainty is not None else ""
            print(f"  {value.component:36} {value.value:10.4g}{error} {value.unit}  {value.note}")


if __name__ == "__main__":
    main()
