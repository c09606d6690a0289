"""Seconds per GPAW label for bcc Li cells of 2, 16 and 54 atoms (one core, 350 eV, PBE).

Also prints the SNAP reference oracle on the same cells for scale: the oracle is what the
active-learning benchmarks use in place of DFT.
Usage: python benchmarks/label_throughput.py [--sizes 2 16 54] [--kpoint-density 3.0]
"""

from __future__ import annotations

import argparse
import tempfile

from tasks.labellers.gpaw import GpawSettings
from tasks import build, label

CELLS = {2: 1, 16: 2, 54: 3, 128: 4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 16, 54], choices=sorted(CELLS))
    parser.add_argument("--kpoint-density", type=float, default=3.0, help="k-points per reciprocal Å")
    args = parser.parse_args()
    typed = GpawSettings(kpoint_density_per_angstrom=args.kpoint_density)
    settings = typed.model_dump()
    from gpaw.fftw import have_fftw  # the plane-wave FFTs: FFTW's, else SciPy's (1.2 times slower labels)
    print(f"GPAW's FFTs: {'FFTW' if have_fftw() else 'SciPy (GPAW built without FFTW)'}")
    print(f"{'atoms':>6} {'k-mesh':>9} {'GPAW s':>9} {'SNAP s':>9} {'ratio':>8}")
    with tempfile.TemporaryDirectory() as work:
        for n_atoms in args.sizes:
            atoms = build.rattled(build.bcc_bulk(3.43, CELLS[n_atoms]), 0.05, n_atoms)
            dft = label.label_structures([atoms], "gpaw", settings, f"{work}/gpaw{n_atoms}").records[0]
            label.label_structures([atoms], "reference", {"potential": "snap"}, f"{work}/warm{n_atoms}")
            oracle = label.label_structures([atoms], "reference", {"potential": "snap"}, f"{work}/snap{n_atoms}").records[0]
            mesh = "x".join(map(str, typed.mesh(atoms)))
            print(f"{n_atoms:>6} {mesh:>9} {dft.wall_time_s:9.1f} {oracle.wall_time_s:9.3f} "
                  f"{dft.wall_time_s / oracle.wall_time_s:8.0f}  ({dft.status})")


if __name__ == "__main__":
    main()
