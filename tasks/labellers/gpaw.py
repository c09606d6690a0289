"""GPAW: embedded, offline DFT (plane waves, PBE); the default labeller of real campaigns."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ase import Atoms
from pydantic import Field

from tasks.labellers.base import KpointSampling, Labeller


class GpawSettings(KpointSampling):
    cutoff_ev: float = Field(350.0, gt=0, description="eV, plane-wave cutoff")
    xc: str = "PBE"
    smearing: Literal["methfessel-paxton", "fermi-dirac"] = "methfessel-paxton"
    smearing_width_ev: float = Field(0.2, gt=0, description="eV")
    scf_max_iterations: int = Field(300, ge=1)
    energy_convergence_ev: float = Field(5e-4, gt=0, description="eV per valence electron")


class Gpaw(Labeller):
    name = "gpaw"
    Settings = GpawSettings

    def calculator(self, atoms: Atoms, settings: GpawSettings, work_dir: Path, name: str):
        from gpaw import GPAW, PW

        work_dir.mkdir(parents=True, exist_ok=True)
        smearing = {"name": settings.smearing, "width": settings.smearing_width_ev}
        if settings.smearing == "methfessel-paxton":
            smearing["order"] = 1
        return GPAW(mode=PW(settings.cutoff_ev), xc=settings.xc,
                    kpts={"size": settings.mesh(atoms), "gamma": True},
                    occupations=smearing, convergence={"energy": settings.energy_convergence_ev},
                    maxiter=settings.scf_max_iterations, txt=str(work_dir / f"{name}.gpaw.txt"))
