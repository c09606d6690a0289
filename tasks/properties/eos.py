"""Equation of state of bcc Li: relaxed lattice constant, V0, bulk modulus B and B' from a
Birch-Murnaghan fit (ASE's `EquationOfState`) of E(V) around the minimum; `equilibrium` finds
any phase's minimum the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from ase import Atoms
from pydantic import Field

from tasks import build
from tasks.plugin import Params
from tasks.properties.base import (EV_PER_A3_IN_GPA, CalculatorFactory, Property, PropertyResult, PropertyValue,
                                   energy)


#: How often the coarse scan (±12 % in V) may move before the search gives up (about ±25 % in a).
MAX_SHIFTS = 3


class NoMinimum(ValueError):
    """The potential has no energy minimum of the phase near the guess: the property cannot be computed."""


class EosParams(Params):
    lattice_constant_guess_angstrom: float = Field(3.45, gt=2.0, lt=6.0, description="Å, where the search starts")
    volume_range: float = Field(0.06, gt=0.005, le=0.2, description="the fit spans V0 × (1 ± this)")
    points: int = Field(9, ge=5, le=41, description="volumes in the fit")


@dataclass(frozen=True)
class Equilibrium:
    """A phase's energy minimum under a potential: what the other properties start from."""

    volume_per_atom: float  # Å³
    energy_per_atom_ev: float
    bulk_modulus_gpa: float
    bulk_modulus_derivative: float
    volumes: list[float]  # per atom, Å³
    energies: list[float]  # per atom, eV

    @property
    def bcc_lattice_constant(self) -> float:
        return (2 * self.volume_per_atom) ** (1 / 3)


def equilibrium(cell_at_volume: Callable[[float], Atoms], volume_guess: float, calculators: CalculatorFactory,
                params: EosParams, phase: str) -> Equilibrium:
    """Two passes: a coarse scan of ±12 % in volume (±4 % in length) brackets the minimum
    (moving towards lower energy if it lies at an edge; `NoMinimum` if there is none), then the
    Birch-Murnaghan fit over V0 × (1 ± volume_range) around it. `cell_at_volume` builds the
    phase at a volume per atom (Å³)."""
    from ase.eos import EquationOfState

    def scan(volumes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        energies = []
        for volume in volumes:
            atoms = cell_at_volume(volume)
            energies.append(energy(atoms, calculators, f"{phase}-{volume:.5f}") / len(atoms))
        return volumes, np.array(energies)

    centre = volume_guess
    for _ in range(MAX_SHIFTS + 1):  # the window moves towards lower energy until it holds the minimum
        coarse = centre * np.linspace(0.96, 1.04, 9) ** 3
        volumes, energies = scan(coarse)
        lowest = int(np.argmin(energies))
        if 0 < lowest < len(coarse) - 1:
            break
        centre = coarse[lowest]
    else:
        raise NoMinimum(f"no {phase} energy minimum between {coarse[0]:.2f} and {coarse[-1]:.2f} Å³/atom after "
                        f"moving the search {MAX_SHIFTS} times from {volume_guess:.2f} Å³/atom: the energy falls "
                        f"monotonically towards {coarse[lowest]:.2f} Å³/atom (a potential without a {phase} "
                        f"minimum there, or a guess far off)")
    v1 = EquationOfState(volumes, energies, eos="birchmurnaghan").fit(warn=False)[0]
    volumes, energies = scan(v1 * np.linspace(1 - params.volume_range, 1 + params.volume_range, params.points))
    fit = EquationOfState(volumes, energies, eos="birchmurnaghan")
    v0, e0, b = fit.fit(warn=False)
    return Equilibrium(float(v0), float(e0), float(b * EV_PER_A3_IN_GPA), float(fit.eos_parameters[2]),
                       volumes.tolist(), energies.tolist())


def bcc_at_volume(volume_per_atom: float) -> Atoms:
    """The cubic bcc cell (2 atoms) at a volume per atom (Å³)."""
    return build.bcc_bulk((2 * volume_per_atom) ** (1 / 3))


def bcc_equilibrium(calculators: CalculatorFactory, params: EosParams = EosParams()) -> Equilibrium:
    """bcc Li's minimum, the search starting at `lattice_constant_guess_angstrom`."""
    return equilibrium(bcc_at_volume, params.lattice_constant_guess_angstrom ** 3 / 2, calculators, params, "bcc")


class AtEquilibrium(Params):
    """Parameters of a property computed at the potential's bcc lattice constant: given (the
    property stage passes the EOS property's result), or found by `bcc_equilibrium` first."""

    lattice_constant_angstrom: float | None = Field(None, gt=2.0, lt=6.0,
                                                    description="Å; unset: the potential's own EOS minimum")
    eos: EosParams = EosParams()

    def lattice_constant(self, calculators: CalculatorFactory) -> float:
        if self.lattice_constant_angstrom is not None:
            return self.lattice_constant_angstrom
        return bcc_equilibrium(calculators, self.eos).bcc_lattice_constant


class EquationOfStateProperty(Property):
    name = "eos"
    Params = EosParams

    def compute(self, params: EosParams, calculators: CalculatorFactory) -> PropertyResult:
        minimum = bcc_equilibrium(calculators, params)
        return PropertyResult(self.name, [
            PropertyValue("lattice_constant", minimum.bcc_lattice_constant, "Å"),
            PropertyValue("volume_per_atom", minimum.volume_per_atom, "Å³"),
            PropertyValue("energy_per_atom", minimum.energy_per_atom_ev, "eV"),
            PropertyValue("bulk_modulus", minimum.bulk_modulus_gpa, "GPa", note="Birch-Murnaghan"),
            PropertyValue("bulk_modulus_derivative", minimum.bulk_modulus_derivative, "1")],
            curves={"energy_per_atom_vs_volume": [minimum.volumes, minimum.energies]})
