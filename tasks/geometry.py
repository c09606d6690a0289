"""Cell geometry the labellers and the runs share: which axes are vacuum, and k-point meshes."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import kptdensity2monkhorstpack

#: Gap along an axis (Å) above which it counts as vacuum: one k-point there, no virial.
VACUUM_GAP_ANGSTROM = 5.0


#: Empty space (Å) between a surface and the periodic image of the opposite one that keeps
#: them apart in MD: wider than any cutoff used here (DeePMD's 6 Å) with room for relaxation.
IMAGE_GAP_ANGSTROM = 8.0


def widest_gaps(atoms: Atoms) -> np.ndarray:
    """The widest empty gap (Å) along each cell vector of a periodic cell, across its boundary too."""
    scaled = np.sort(np.mod(atoms.get_scaled_positions(wrap=False), 1.0), axis=0)
    gaps = np.diff(np.vstack([scaled, scaled[:1] + 1.0]), axis=0)
    return gaps.max(axis=0) * atoms.cell.lengths()


def vacuum_axes(atoms: Atoms, min_gap_angstrom: float = VACUUM_GAP_ANGSTROM) -> tuple[bool, bool, bool]:
    """Axes along which the atoms leave an empty gap wider than `min_gap` (slabs, clusters)."""
    if not atoms.pbc.all():
        return tuple(not p for p in atoms.pbc)  # type: ignore[return-value]
    return tuple(bool(gap > min_gap_angstrom) for gap in widest_gaps(atoms))  # type: ignore[return-value]


def kpoint_mesh(atoms: Atoms, density_per_angstrom: float) -> tuple[int, int, int]:
    """Monkhorst-Pack size from a k-point density (ASE convention), 1 along vacuum axes."""
    vacuum = vacuum_axes(atoms)
    periodic = atoms.copy()
    periodic.pbc = [not v for v in vacuum]
    return tuple(int(k) for k in kptdensity2monkhorstpack(periodic, density_per_angstrom, even=False))  # type: ignore


def lammps_box_lengths(atoms: Atoms) -> np.ndarray:
    """Box lengths (lx, ly, lz) of the cell as LAMMPS holds it (a along x, b in the xy plane)."""
    a, b, c, _, _, _ = atoms.cell.cellpar()
    lx = a
    xy = np.dot(atoms.cell[1], atoms.cell[0]) / a
    ly = np.sqrt(max(b ** 2 - xy ** 2, 0.0))
    lz = abs(atoms.cell.volume) / (lx * ly) if lx * ly > 0 else c
    return np.array([lx, ly, lz])
