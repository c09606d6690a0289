"""Quantum ESPRESSO (pw.x) through ASE's calculator (PBE, Marzari-Vanderbilt smearing)."""

from __future__ import annotations

from pathlib import Path

from ase import Atoms

from tasks.labellers.base import ExternalDftSettings, Labeller

RYDBERG_EV = 13.605693122994


class QuantumEspresso(Labeller):
    name = "qe"
    Settings = ExternalDftSettings

    def calculator(self, atoms: Atoms, settings: ExternalDftSettings, work_dir: Path, name: str):
        from ase.calculators.espresso import Espresso, EspressoProfile

        directory = work_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        input_data = {
            "control": {"calculation": "scf", "tprnfor": True, "tstress": True},
            "system": {"ecutwfc": settings.cutoff_ev / RYDBERG_EV, "occupations": "smearing",
                       "smearing": "mv", "degauss": settings.smearing_width_ev / RYDBERG_EV},
            "electrons": {"conv_thr": 1e-8},
        }
        extra = dict(settings.extra)
        pseudopotential = extra.pop("pseudopotential", "Li.pbe-s-kjpaw_psl.1.0.0.UPF")
        for section, values in extra.items():
            input_data.setdefault(section, {}).update(values)
        profile = EspressoProfile(command=settings.command, pseudo_dir=str(settings.pseudopotential_dir or "."))
        return Espresso(profile=profile, directory=str(directory), input_data=input_data,
                        pseudopotentials={"Li": pseudopotential}, kpts=settings.mesh(atoms))
