"""Equation of state of bcc Li: relaxed lattice constant, V0, bulk modulus B and B' from a
Birch-Murnaghan fit (ASE's `EquationOfState`) of E(V) around the minimum."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from tasks import build
from tasks.plugin import Params
from tasks.properties.base import (EV_PER_A3_IN_GPA, CalculatorFactory, Property, PropertyResult, PropertyValue,
                                   energy)


#: How often the coarse scan (±4 % in a) may move before the search gives up (about ±25 % in a).
MAX_SHIFTS = 3


class NoMinimum(ValueError):
    """The potential has no bcc energy minimum near the guess: the property cannot be computed."""


class EosParams(Params):
    lattice_constant_guess_angstrom: float = Field(3.45, gt=2.0, lt=6.0, description="Å, where the search starts")
    volume_range: float = Field(0.06, gt=0.005, le=0.2, description="the fit spans V0 × (1 ± this)")
    points: int = Field(9, ge=5, le=41, description="volumes in the fit")


@dataclass(frozen=True)
class Equilibrium:
    """The bcc minimum of a potential: what the other properties start from."""

    lattice_constant_angstrom: float
    energy_per_atom_ev: float
    bulk_modulus_gpa: float
    bulk_modulus_derivative: float
    volumes: list[float]  # per atom, Å³
    energies: list[float]  # per atom, eV


def bcc_equilibrium(calculators: CalculatorFactory, params: EosParams = EosParams()) -> Equilibrium:
    """Two passes: a coarse scan of ±4 % in the lattice constant brackets the minimum (moving
    towards lower energy if it lies at an edge; `NoMinimum` if there is none), then the
    Birch-Murnaghan fit over V0 × (1 ± volume_range) around it."""
    from ase.eos import EquationOfState

    def scan(lattice_constants: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        energies = np.array([energy(build.bcc_bulk(a), calculators, f"eos-{a:.5f}") / 2 for a in lattice_constants])
        return lattice_constants ** 3 / 2, energies

    centre = params.lattice_constant_guess_angstrom
    for _ in range(MAX_SHIFTS + 1):  # the window moves towards lower energy until it holds the minimum
        coarse = centre * np.linspace(0.96, 1.04, 9)
        volumes, energies = scan(coarse)
        lowest = int(np.argmin(energies))
        if 0 < lowest < len(coarse) - 1:
            break
        centre = coarse[lowest]
    else:
        raise NoMinimum(f"no bcc energy minimum between {coarse[0]:.3f} and {coarse[-1]:.3f} Å after moving the "
                        f"search {MAX_SHIFTS} times from {params.lattice_constant_guess_angstrom} Å: the energy "
                        f"falls monotonically towards {coarse[lowest]:.3f} Å (a potential without a bcc minimum "
                        f"there, or a guess far off)")
    v1 = EquationOfState(volumes, energies, eos="birchmurnaghan").fit(warn=False)[0]
    fine_volumes = v1 * np.linspace(1 - params.volume_range, 1 + params.volume_range, params.points)
    volumes, energies = scan((2 * fine_volumes) ** (1 / 3))
    fit = EquationOfState(volumes, energies, eos="birchmurnaghan")
    v0, e0, b = fit.fit(warn=False)
    b_prime = float(fit.eos_parameters[2])
    return Equilibrium(float((2 * v0) ** (1 / 3)), float(e0), float(b * EV_PER_A3_IN_GPA), b_prime,
                       volumes.tolist(), energies.tolist())


class AtEquilibrium(Params):
    """Parameters of a property computed at the potential's bcc lattice constant: given (the
    property stage passes the EOS property's result), or found by `bcc_equilibrium` first."""

    lattice_constant_angstrom: float | None = Field(None, gt=2.0, lt=6.0,
                                                    description="Å; unset: the potential's own EOS minimum")
    eos: EosParams = EosParams()

    def lattice_constant(self, calculators: CalculatorFactory) -> float:
        if self.lattice_constant_angstrom is not None:
            return self.lattice_constant_angstrom
        return bcc_equilibrium(calculators, self.eos).lattice_constant_angstrom


class EquationOfStateProperty(Property):
    name = "eos"
    Params = EosParams

    def compute(self, params: EosParams, calculators: CalculatorFactory) -> PropertyResult:
        minimum = bcc_equilibrium(calculators, params)
        return PropertyResult(self.name, [
            PropertyValue("lattice_constant", minimum.lattice_constant_angstrom, "Å"),
            PropertyValue("volume_per_atom", minimum.lattice_constant_angstrom ** 3 / 2, "Å³"),
            PropertyValue("energy_per_atom", minimum.energy_per_atom_ev, "eV"),
            PropertyValue("bulk_modulus", minimum.bulk_modulus_gpa, "GPa", note="Birch-Murnaghan"),
            PropertyValue("bulk_modulus_derivative", minimum.bulk_modulus_derivative, "1")],
            curves={"energy_per_atom_vs_volume": [minimum.volumes, minimum.energies]})
