"""GPAW: embedded, offline DFT (plane waves, PBE); the default labeller of real campaigns."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

from ase import Atoms
from pydantic import Field

from tasks.labellers.base import KpointSampling, Labeller

#: How often (wall seconds) a label writes its SCF state, wave functions included, for a killed
#: task to resume from: a 54-atom label at 8 k-points per Å⁻¹ takes 16 SCF steps of 1-2 minutes
#: each on one core here, and a write of its 0.6 GB 8 s. Labels shorter than this never
#: write one. Not a setting: it changes no label, so it is not part of the labels' settings hash.
CHECKPOINT_INTERVAL_S = 600.0


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

    @contextmanager
    def resumable_calculator(self, atoms: Atoms, settings: GpawSettings, work_dir: Path,
                             name: str) -> Iterator[Any]:
        """Writes `<name>.gpw` every `CHECKPOINT_INTERVAL_S` of SCF; where one is found, the SCF
        goes on from its density and wave functions. A resumed label agrees with an
        uninterrupted one to the SCF's tolerance, not bit for bit. The file is deleted when the
        label has an outcome (a result or GPAW's error); a kill, a Ctrl-C or an exit leaves it.

        The state is written in double precision: GPAW 26.7 restarted from a single-precision
        file fails its first subspace diagonalisation."""
        from gpaw import GPAW

        checkpoint = work_dir / f"{name}.gpw"
        calc = None
        if checkpoint.is_file():
            try:
                calc = GPAW(str(checkpoint), txt=str(work_dir / f"{name}.gpaw.txt"))
            except Exception:  # unreadable (a GPAW of another version): start over
                checkpoint.unlink(missing_ok=True)  # every rank may try
        if calc is None:
            calc = self.calculator(atoms, settings, work_dir, name)
        last_write = time.monotonic()

        def write_state(context: Any) -> None:
            nonlocal last_write
            if time.monotonic() - last_write < CHECKPOINT_INTERVAL_S:
                return
            partial = work_dir / f"{name}.partial.gpw"  # renamed when whole: a kill mid-write keeps the last
            calc.write(partial, mode="all")
            if calc.comm.rank == 0:
                os.replace(partial, checkpoint)
            last_write = time.monotonic()

        def forget_state() -> None:
            if calc.comm.rank == 0:
                checkpoint.unlink(missing_ok=True)
                (work_dir / f"{name}.partial.gpw").unlink(missing_ok=True)

        calc.hooks["scf_step"] = write_state
        try:
            yield calc
        except Exception:  # GPAW's own failure is an outcome; a KeyboardInterrupt or exit is a kill
            forget_state()
            raise
        forget_state()
