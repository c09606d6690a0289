"""How far apart the labels' k-meshes put one crystal: perfect bcc Li in each cell shape of the
training set, each at the mesh the labeller's rule gives that cell.

A local model gives perfect bcc one energy per atom whatever cell holds it, so where the
labels' k-point rule (8 k-points per Å⁻¹, rounded up per axis: `tasks.geometry.kpoint_mesh`)
samples the same crystal differently in two cell shapes, the difference is an error no
network can fit. The cells: the 2-atom cubic cell of the EOS and shear labels (15³), the
16-atom one of the rattled bulk, vacancy and interstitial labels (8³, which is 16³ of the
2-atom cell), the 54-atom one of the explored bulk (5³, which is 15³), and the three slabs'
own in-plane cells with the vacuum closed to one interlayer spacing (their in-plane meshes,
k along the normal by the same rule). GPAW at the labels' settings, one core: 434 s in all beside two
DeePMD trainings (the 54-atom cell 188 s).
Usage: python benchmarks/kpoint_mesh_offsets.py [--lattice-constant 3.44]
       [--output benchmarks/results/kpoint_mesh_offsets.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from campaign.config import load_config  # noqa: E402
from tasks.atomic import write_json  # noqa: E402
from tasks.build import slab  # noqa: E402
from tasks.labellers.gpaw import Gpaw, GpawSettings  # noqa: E402
from tasks.properties.base import EV_PER_A3_IN_GPA  # noqa: E402
from tasks.properties.surface import _is_bcc  # noqa: E402
from tasks.runtime import prepare_process  # noqa: E402

#: the training set's slab labels: facet and in-plane repeats, 6 layers
SLABS = (((1, 0, 0), (1, 1)), ((1, 1, 0), (1, 2)), ((1, 1, 1), (1, 2)))


def cells(lattice_constant: float) -> dict[str, Atoms]:
    cubic = bulk("Li", "bcc", a=lattice_constant, cubic=True)
    shapes = {"2-atom cubic": cubic, "16-atom cubic": cubic.repeat(2), "54-atom cubic": cubic.repeat(3)}
    for miller, size in SLABS:
        # one interlayer spacing between the top plane and the bottom one's image: the slab's
        # own cell made periodic bulk
        spacing = lattice_constant / np.sqrt(sum(m * m for m in miller)) / (2 if sum(miller) % 2 else 1)
        closed = slab(miller=miller, layers=6, size=size, vacuum_angstrom=spacing, lattice_constant=lattice_constant)
        if not _is_bcc(closed, lattice_constant):
            raise RuntimeError(f"the closed {miller} slab is not bcc")
        shapes[f"({''.join(map(str, miller))}) slab cell, closed"] = closed
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lattice-constant", type=float, default=3.44, help="Å: the labels' own")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "kpoint_mesh_offsets.json")
    args = parser.parse_args()
    prepare_process()
    settings = GpawSettings.model_validate(load_config(ROOT / "configs" / "li-training-set.yaml").label.settings("gpaw"))
    rows, reference = {}, None
    with tempfile.TemporaryDirectory() as scratch:
        for name, atoms in cells(args.lattice_constant).items():
            started = time.perf_counter()
            atoms.calc = Gpaw().calculator(atoms, settings, Path(scratch), f"cell-{len(rows)}")
            energy = atoms.get_potential_energy(force_consistent=True) / len(atoms)  # as the labels store it
            pressure = -atoms.get_stress()[:3].mean() * EV_PER_A3_IN_GPA
            reference = energy if reference is None else reference
            rows[name] = {"atoms": len(atoms), "mesh": list(settings.mesh(atoms)),
                          "free_energy_ev_per_atom": energy, "pressure_gpa": pressure,
                          "minus_2_atom_mev_per_atom": 1000 * (energy - reference),
                          "seconds": time.perf_counter() - started}
            print(f"{name:24} {len(atoms):3d} atoms  mesh {settings.mesh(atoms)}  {energy:.6f} eV/atom "
                  f"({1000 * (energy - reference):+.2f} meV/atom)  P {pressure:+.4f} GPa  "
                  f"{rows[name]['seconds']:.0f} s", flush=True)
    write_json(args.output, {"lattice_constant_angstrom": args.lattice_constant, "settings": settings.model_dump(),
                             "cells": rows})


if __name__ == "__main__":
    main()
