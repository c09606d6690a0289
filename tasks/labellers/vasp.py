"""VASP through ASE's calculator (PBE, Li_sv, Methfessel-Paxton), on clusters."""

from __future__ import annotations

import os
from pathlib import Path

from ase import Atoms

from tasks.labellers.base import ExternalDftSettings, Labeller


class Vasp(Labeller):
    name = "vasp"
    Settings = ExternalDftSettings

    def calculator(self, atoms: Atoms, settings: ExternalDftSettings, work_dir: Path, name: str):
        from ase.calculators.vasp import Vasp as AseVasp

        directory = work_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        if settings.pseudopotential_dir:
            os.environ.setdefault("VASP_PP_PATH", str(settings.pseudopotential_dir))
        mesh = settings.mesh(atoms)
        parameters = dict(xc="PBE", encut=settings.cutoff_ev, kpts=mesh, gamma=True, ismear=1,
                          sigma=settings.smearing_width_ev, ediff=1e-6, prec="Accurate", lreal=False, isym=0,
                          lwave=False, lcharg=False, setups={"Li": "_sv"})
        parameters.update(settings.extra)
        return AseVasp(command=settings.command, directory=str(directory), **parameters)
