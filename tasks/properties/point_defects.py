"""Formation energies of a vacancy and of octahedral and tetrahedral interstitials in bcc Li,
ions relaxed at the potential's own lattice constant, over several supercell sizes.

E_f = E(N ± 1, relaxed) − (N ± 1)/N · E(N), with E(N) the perfect supercell of the same size
(so a DFT code sees the same k-mesh in both). The value is the largest supercell's; its
uncertainty is the change from the next smaller one, the convergence the curves show.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tasks import build
from tasks.properties.base import (CalculatorFactory, Property, PropertyResult, PropertyValue, energy, last_change,
                                   relaxed_energy)
from tasks.properties.eos import AtEquilibrium

Defect = Literal["vacancy", "octahedral", "tetrahedral"]


class PointDefectParams(AtEquilibrium):
    defects: list[Defect] = Field(["vacancy", "octahedral", "tetrahedral"], min_length=1)
    sizes: list[int] = Field([3, 4], min_length=1, description="conventional cells per side, N = 2 size³")
    fmax_ev_per_angstrom: float = Field(2e-3, gt=0, description="eV/Å, ions relaxed below it")

    @field_validator("sizes")
    @classmethod
    def _ascending(cls, sizes: list[int]) -> list[int]:
        if any(not 2 <= s <= 8 for s in sizes) or sizes != sorted(set(sizes)):
            raise ValueError("sizes must be distinct, ascending, each in [2, 8]")
        return sizes


def defect_cell(defect: Defect, lattice_constant: float, size: int):
    if defect == "vacancy":
        return build.vacancy(lattice_constant, size)
    return build.interstitial(lattice_constant, size, site=defect)


class PointDefects(Property):
    name = "point_defects"
    Params = PointDefectParams

    def compute(self, params: PointDefectParams, calculators: CalculatorFactory) -> PropertyResult:
        a0 = params.lattice_constant(calculators)
        values, curves = [], {}
        perfect = {size: energy(build.bcc_bulk(a0, size), calculators, f"perfect-{size}") for size in params.sizes}
        for defect in params.defects:
            formation = []
            for size in params.sizes:
                n = 2 * size ** 3
                cell = defect_cell(defect, a0, size)
                relaxed, _ = relaxed_energy(cell, calculators, f"{defect}-{size}", params.fmax_ev_per_angstrom)
                formation.append(relaxed - len(cell) / n * perfect[size])
            values.append(PropertyValue(f"formation_energy_{defect}", formation[-1], "eV", last_change(formation),
                                        note=f"{2 * params.sizes[-1] ** 3}-site supercell"))
            curves[f"formation_energy_{defect}_vs_sites"] = [[2 * s ** 3 for s in params.sizes], formation]
        return PropertyResult(self.name, values, curves)
