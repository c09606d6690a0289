"""GPAW's one-sided elastic response of strained 2-atom bcc Li cells on one k-point mesh for
all: whether the strain labels' C11 - C12 and C44 (`elastic_labels.py`) are the mesh's noise.

The unstrained cell and the orthorhombic, tetragonal and trigonal strains of 0.02 of
`configs/li-training-set.yaml`, at 3.44 Å, through the `gpaw` labeller at the labels' settings
but with `kpoint_mesh` fixed, for each `--meshes` size and SCF `--tolerance` (eV per valence
electron). One core; 6-60 s per cell.
Usage: python benchmarks/gpaw_strain_labels.py [--meshes 15 20] [--tolerance 5e-4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elastic_labels import constant  # noqa: E402  (this script's folder is on the path)
from tasks import build  # noqa: E402
from tasks.labellers.gpaw import Gpaw, GpawSettings  # noqa: E402
from tasks.properties.base import EV_PER_A3_IN_GPA  # noqa: E402

STRAINS = {"orthorhombic": [0.02, -0.02, 0, 0, 0, 0], "tetragonal": [0.02, -0.01, -0.01, 0, 0, 0],
           "trigonal": [0, 0, 0, 0.02, 0.02, 0.02]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meshes", type=int, nargs="*", default=[15, 20])
    parser.add_argument("--tolerance", type=float, default=5e-4)
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="gpaw-strain-"))
    for mesh in args.meshes:
        settings = GpawSettings(cutoff_ev=350, kpoint_density_per_angstrom=8.0, kpoint_mesh=(mesh,) * 3,
                                energy_convergence_ev=args.tolerance)
        results = {}
        for name, strain in {"unstrained": [0] * 6, **STRAINS}.items():
            atoms = build.strained_bulk(strain_voigt=strain, lattice_constant=3.44)
            atoms.calc = Gpaw().calculator(atoms, settings, work_dir / str(mesh), name)
            started = time.perf_counter()
            results[name] = (atoms.get_potential_energy(), atoms.get_stress(voigt=False) * EV_PER_A3_IN_GPA)
            print(f"{mesh}³ {name}: E {results[name][0]:.6f} eV, {time.perf_counter() - started:.0f} s", flush=True)
        energy0, stress0 = results["unstrained"]
        for name, strain in STRAINS.items():
            energy, stress = results[name]
            which, value = constant(strain, stress - stress0)
            print(f"{mesh}³ {name}: ΔE {1000 * (energy - energy0):+.2f} meV/cell, {which} {value:.2f} GPa")


if __name__ == "__main__":
    main()
