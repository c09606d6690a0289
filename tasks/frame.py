"""One MD frame as the runner hands it to the fields, and its conversion to ASE `Atoms`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms

#: Å/ps in ASE's velocity unit (Å / (Å sqrt(amu/eV))).
ANGSTROM_PER_PS_IN_ASE_UNITS = 98.22694788


@dataclass
class Frame:
    step: int
    time_ps: float
    ids: np.ndarray  # LAMMPS ids, ascending
    types: np.ndarray  # 0-based indices into type_map
    positions: np.ndarray  # unwrapped, Å
    velocities: np.ndarray  # Å/ps
    potential_energy: np.ndarray  # eV per atom
    masses: np.ndarray  # amu
    fixed: np.ndarray  # bool
    box_lo: np.ndarray
    box_hi: np.ndarray
    #: unwrapped positions averaged over the protocol's `frame_average_steps` before this frame
    #: (a hot crystal without its thermal noise), instantaneous for atoms that arrived since the
    #: previous frame; None where the run took no average
    mean_positions: np.ndarray | None = None

    @property
    def lengths(self) -> np.ndarray:
        return self.box_hi - self.box_lo


def frame_to_atoms(frame: Frame, type_map: Sequence[str]) -> Atoms:
    atoms = Atoms([type_map[t] for t in frame.types], positions=frame.positions - frame.box_lo,
                  cell=np.diag(frame.box_hi - frame.box_lo), pbc=True)
    atoms.set_velocities(frame.velocities / ANGSTROM_PER_PS_IN_ASE_UNITS)
    atoms.set_array("fixed", frame.fixed)
    atoms.set_array("lammps_id", frame.ids)
    return atoms
