"""Trajectories written outside the campaign, read as the frames our fields take.

* LAMMPS text dumps (`dump custom`): columns `id type` and positions — `xu yu zu`
  (unwrapped), or `x y z` with image flags `ix iy iz`, or wrapped `x y z` — and optionally
  `vx vy vz` (Å/ps) and a per-atom energy column (`c_pe...`, `pe`); the time is the dump's
  `ITEM: TIME` or the step times `timestep_ps`;
* whatever ASE reads with velocities and energies (extended XYZ, ASE `.traj`).

Types are indices into `type_map` (LAMMPS type k is type_map[k-1], as our data files write
them); masses come from `masses`, never from the file (ASE takes LAMMPS type 1 for H).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tasks.frame import ANGSTROM_PER_PS_IN_ASE_UNITS, Frame

FORMATS = ("lammps-dump", "extxyz", "traj")


def read_lammps_dump(path: str | Path, masses: Sequence[float], timestep_ps: float | None = None) -> list[Frame]:
    """Every frame of a LAMMPS text dump (see the module docstring for the columns it takes)."""
    lines = Path(path).read_text().splitlines()
    frames, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("ITEM: TIMESTEP"):
            i += 1
            continue
        step, time_ps = int(lines[i + 1].split()[0]), None
        i += 2
        if lines[i].startswith("ITEM: TIME"):
            time_ps, i = float(lines[i + 1]), i + 2
        n_atoms = int(lines[i + 1])
        bounds = np.array([[float(v) for v in lines[i + 3 + k].split()[:2]] for k in range(3)])
        header = lines[i + 6].split()[2:]  # after NUMBER OF ATOMS, its value, BOX BOUNDS and three bounds
        table = np.array([line.split() for line in lines[i + 7:i + 7 + n_atoms]], dtype=float).reshape(n_atoms, -1)
        i += 7 + n_atoms
        column = {name: table[:, k] for k, name in enumerate(header)}
        lengths = bounds[:, 1] - bounds[:, 0]
        if all(f"{a}u" in column for a in "xyz"):
            positions = np.column_stack([column[f"{a}u"] for a in "xyz"])
        else:
            positions = np.column_stack([column[a] for a in "xyz"])
            if all(f"i{a}" in column for a in "xyz"):
                positions = positions + np.column_stack([column[f"i{a}"] for a in "xyz"]) * lengths
        velocities = np.column_stack([column[f"v{a}"] for a in "xyz"]) if "vx" in column else np.zeros((n_atoms, 3))
        energy_column = next((c for c in header if c.startswith("c_pe") or c == "pe"), None)
        energy = column[energy_column] if energy_column else np.zeros(n_atoms)
        order = np.argsort(column["id"], kind="stable")
        types = column["type"].astype(int)[order] - 1
        if time_ps is None:
            if timestep_ps is None:
                raise ValueError(f"{path}: the dump has no ITEM: TIME; give the timestep (ps)")
            time_ps = step * timestep_ps
        frames.append(Frame(step=step, time_ps=time_ps, ids=column["id"].astype(np.int64)[order], types=types,
                            positions=positions[order], velocities=velocities[order], potential_energy=energy[order],
                            masses=np.asarray(masses, dtype=float)[types], fixed=np.zeros(n_atoms, dtype=bool),
                            box_lo=bounds[:, 0].copy(), box_hi=bounds[:, 1].copy()))
    if not frames:
        raise ValueError(f"{path}: no frame found (not a LAMMPS text dump?)")
    return frames


def read_ase(path: str | Path, type_map: Sequence[str], masses: Sequence[float], timestep_ps: float) -> list[Frame]:
    """Every frame ASE reads from `path` (extended XYZ, .traj); the k-th frame is at k × timestep."""
    from ase.io import read

    frames = []
    for k, atoms in enumerate(read(str(path), index=":")):
        unknown = set(atoms.get_chemical_symbols()) - set(type_map)
        if unknown:
            raise ValueError(f"{path}: elements {sorted(unknown)} are not in type_map {list(type_map)}")
        types = np.array([type_map.index(s) for s in atoms.get_chemical_symbols()])
        try:
            energy = atoms.get_potential_energies()
        except Exception:  # noqa: BLE001 - a file without per-atom energies: not an error, zeros
            energy = np.zeros(len(atoms))
        ids = np.asarray(atoms.arrays.get("lammps_id", np.arange(1, len(atoms) + 1)), dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        fixed = np.asarray(atoms.arrays.get("fixed", np.zeros(len(atoms), dtype=bool)), dtype=bool)
        frames.append(Frame(step=k, time_ps=k * timestep_ps, ids=ids[order], types=types[order],
                            positions=atoms.positions[order],
                            velocities=atoms.get_velocities()[order] * ANGSTROM_PER_PS_IN_ASE_UNITS,
                            potential_energy=np.asarray(energy)[order], masses=np.asarray(masses)[types[order]],
                            fixed=fixed[order], box_lo=np.zeros(3), box_hi=atoms.cell.lengths().copy()))
    return frames


def read_frames(path: str | Path, format: str, type_map: Sequence[str], masses: Mapping[str, float],
                timestep_ps: float | None = None) -> list[Frame]:
    """The frames of an external trajectory file, in one of FORMATS."""
    by_type = [masses[e] for e in type_map]
    if format == "lammps-dump":
        return read_lammps_dump(path, by_type, timestep_ps)
    if format in ("extxyz", "traj"):
        if timestep_ps is None:
            raise ValueError(f"{path}: give the time between frames (ps) for a {format} file")
        return read_ase(path, type_map, by_type, timestep_ps)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
