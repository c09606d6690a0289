"""bcc Li against the close-packed phases at 0 K: the energies of fcc and ideal hcp relative to
bcc, each at its own minimum volume, and the Bain path from bcc to fcc at the bcc volume.

PBE puts fcc and hcp Li 1.5-2 meV/atom below bcc (bcc wins above about 70 K by its vibrational
entropy), so a potential's bcc crystal survives MD only if these few meV are right: a potential
with a barrier-free Bain path or close-packed energies far below bcc's turns bcc into fcc at
100 K. Each phase's minimum is found as the EOS finds bcc's (`eos.equilibrium`): a coarse
scan that follows the energy downhill, then a Birch-Murnaghan fit around the minimum.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from ase import Atoms
from pydantic import Field

from tasks import build
from tasks.properties.base import CalculatorFactory, Property, PropertyResult, PropertyValue, energy
from tasks.properties.eos import AtEquilibrium, bcc_at_volume, equilibrium

PHASES = ("bcc", "fcc", "hcp")


class PhaseStabilityParams(AtEquilibrium):
    bain_points: int = Field(5, ge=3, le=21, description="c/a values from 1 (bcc) to √2 (fcc), both included")


def _phase_at_volume(phase: str) -> Callable[[float], Atoms]:
    """The phase's cell at a volume per atom (Å³): close_packed scales bcc's atomic volume."""
    if phase == "bcc":
        return bcc_at_volume
    return lambda volume: build.close_packed(phase, lattice_constant=(2 * volume) ** (1 / 3))


class PhaseStability(Property):
    name = "phase_stability"
    Params = PhaseStabilityParams

    def compute(self, params: PhaseStabilityParams, calculators: CalculatorFactory) -> PropertyResult:
        bcc_volume = params.lattice_constant(calculators) ** 3 / 2
        minima = {phase: equilibrium(_phase_at_volume(phase), bcc_volume, calculators, params.eos, phase)
                  for phase in PHASES}
        bcc = minima["bcc"]
        curves = {f"energy_per_atom_{phase}_vs_volume": [m.volumes, m.energies] for phase, m in minima.items()}
        values = []
        for phase in ("fcc", "hcp"):
            values += [PropertyValue(f"energy_{phase}_minus_bcc", 1000 * (minima[phase].energy_per_atom_ev -
                                                                          bcc.energy_per_atom_ev), "meV/atom",
                                     note="each phase at its own minimum volume"),
                       PropertyValue(f"volume_ratio_{phase}_to_bcc", minima[phase].volume_per_atom / bcc.volume_per_atom,
                                     "1")]
        ratios = np.linspace(1.0, np.sqrt(2), params.bain_points)
        bain = [energy(cell := build.bain_path(r, lattice_constant=bcc.bcc_lattice_constant), calculators,
                       f"bain-{r:.4f}") / len(cell) for r in ratios]
        bain_mev = [1000 * (e - bain[0]) for e in bain]
        curves["bain_energy_vs_c_over_a"] = [ratios.tolist(), bain_mev]
        values += [PropertyValue("bain_fcc_minus_bcc", bain_mev[-1], "meV/atom", note="at the bcc volume"),
                   PropertyValue("bain_barrier", max(bain_mev), "meV/atom",
                                 note="highest point of the path above bcc; 0: bcc slides to fcc downhill")]
        return PropertyResult(self.name, values, curves=curves)
