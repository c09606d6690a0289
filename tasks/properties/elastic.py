"""Cubic elastic constants C11, C12, C44 at 0 K by stress-strain with relaxed ions, at the
potential's own lattice constant; Voigt bulk and shear moduli from them.

Each constant is the slope of a least-squares line through the stresses at the given strain
magnitudes (both signs): C11 from σxx and C12 from (σyy + σzz)/2 under εxx, C44 from σyz
under the engineering shear γyz. The fit's standard error is the uncertainty; the curves
keep every point so the fit can be shown.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import AfterValidator, Field

from tasks import build
from tasks.properties.base import (EV_PER_A3_IN_GPA, CalculatorFactory, Property, PropertyResult, PropertyValue,
                                   linear_fit, relaxed_energy)
from tasks.properties.eos import AtEquilibrium


def _linear(strains: list[float]) -> list[float]:
    if any(not 0 < s <= 0.05 for s in strains):
        raise ValueError("each strain magnitude must lie in (0, 0.05]: beyond that the response is not linear")
    return strains


#: Strain magnitudes, each applied with both signs, within the linear response.
StrainMagnitudes = Annotated[list[float], Field(min_length=1, description="strain magnitudes, each applied with "
                                                                          "both signs"), AfterValidator(_linear)]


class ElasticParams(AtEquilibrium):
    strains: StrainMagnitudes = [0.005, 0.01]
    size: int = Field(2, ge=1, le=8, description="conventional cells per side")
    fmax_ev_per_angstrom: float = Field(1e-3, gt=0, description="eV/Å, ions relaxed below it")


class ElasticConstants(Property):
    name = "elastic"
    Params = ElasticParams

    def compute(self, params: ElasticParams, calculators: CalculatorFactory) -> PropertyResult:
        a0 = params.lattice_constant(calculators)
        cell = build.bcc_bulk(a0, params.size)
        strains = np.array(sorted([-s for s in params.strains] + list(params.strains)))

        def stresses(component: int) -> np.ndarray:  # Voigt stresses (GPa) at each strain of one component
            rows = []
            for strain in strains:
                voigt = np.zeros(6)
                voigt[component] = strain
                _, relaxed = relaxed_energy(build.strained(cell, voigt), calculators,
                                            f"elastic-{component}-{strain:+.4f}", params.fmax_ev_per_angstrom)
                rows.append(relaxed.get_stress(voigt=True) * EV_PER_A3_IN_GPA)
            return np.array(rows)

        normal, shear = stresses(0), stresses(3)
        c11, c11_error = linear_fit(strains, normal[:, 0])
        c12, c12_error = linear_fit(strains, (normal[:, 1] + normal[:, 2]) / 2)
        c44, c44_error = linear_fit(strains, shear[:, 3])
        return PropertyResult(self.name, [
            PropertyValue("C11", c11, "GPa", c11_error), PropertyValue("C12", c12, "GPa", c12_error),
            PropertyValue("C44", c44, "GPa", c44_error),
            PropertyValue("bulk_modulus_voigt", (c11 + 2 * c12) / 3, "GPa"),
            PropertyValue("shear_modulus_voigt", (c11 - c12 + 3 * c44) / 5, "GPa"),
            PropertyValue("anisotropy", 2 * c44 / (c11 - c12) if c11 != c12 else float("inf"), "1",
                          note="Zener, 2 C44 / (C11 - C12)")],
            curves={"sigma_xx_vs_eps_xx": [strains.tolist(), normal[:, 0].tolist()],
                    "sigma_yy_vs_eps_xx": [strains.tolist(), ((normal[:, 1] + normal[:, 2]) / 2).tolist()],
                    "sigma_yz_vs_gamma_yz": [strains.tolist(), shear[:, 3].tolist()]})
