"""A classical Li potential run by LAMMPS as the labeller: the fast test oracle, not DFT."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ase import Atoms
from pydantic import Field

from tasks.labellers.base import Labeller
from tasks.plugin import Params
from tasks.potentials import classical
from tasks.runtime import prepare_process


class ReferenceSettings(Params):
    potential: Literal["snap", "snap_quadratic", "meam"] = Field("snap", description="a classical potential of "
                                                                                     "tasks.potentials")


class Reference(Labeller):
    name = "reference"
    Settings = ReferenceSettings
    periodic = False
    elements = ("Li",)

    def calculator(self, atoms: Atoms, settings: ReferenceSettings, work_dir: Path, name: str):
        prepare_process()
        from ase.calculators.lammpslib import LAMMPSlib

        return LAMMPSlib(lmpcmds=classical(settings.potential).pair_commands(), atom_types={"Li": 1},
                         atom_type_masses={"Li": 6.94}, log_file=None, keep_alive=True)
