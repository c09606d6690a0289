"""Cubic elastic constants C11, C12, C44 of bcc Li at finite temperature, by stress-strain in MD.

At each temperature, one LAMMPS run: the zero-pressure box at that temperature found as the
`thermal_expansion` property finds it (`thermal.zero_pressure_box`), then NVT at that box and
at each strain of the list applied to it with both signs, εxx for C11 and C12 and the engineering
shear γyz for C44. After `settle_ps` at a strain the stress is averaged over `average_ps`
(the kinetic part included: it cancels in the differences). Each constant is the
least-squares slope of the mean stresses against the strains (the reference at zero strain
among them), its uncertainty propagated from each mean's block-average standard error. At
low temperature the values tend to the 0 K relaxed-ion ones (the `elastic` property's). A
temperature with no zero-pressure box is that temperature's finding, as in `thermal_expansion`.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tasks.properties.base import CalculatorFactory, Property, PropertyResult, PropertyValue
from tasks.properties.elastic import StrainMagnitudes
from tasks.properties.thermal import (BCC_NOTE, MIN_CRYSTAL_BCC, NoStableCrystal, ZeroPressureParams,
                                      block_error, mean_bcc_fraction, nvt_command, run_sampled, slope_with_errors,
                                      stress_gpa, zero_pressure_crystal)

#: Voigt indices of the stresses each constant is read from.
XX, YY, ZZ, YZ = 0, 1, 2, 3


class ElasticAtTemperatureParams(ZeroPressureParams):
    strains: StrainMagnitudes = [0.01]
    average_ps: float = Field(10.0, gt=0, description="ps over which each stress (and each pressure of the "
                                                      "zero-pressure search) is averaged")
    samples: int = Field(200, ge=10, description="samples over average_ps (5 blocks for the error)")


class ElasticAtTemperature(Property):
    name = "elastic_at_temperature"
    Params = ElasticAtTemperatureParams
    runs_md = True

    def compute(self, params: ElasticAtTemperatureParams, calculators: CalculatorFactory,
                pair_commands: list[str] | None = None) -> PropertyResult:
        if pair_commands is None:
            raise ValueError("elastic constants at temperature run MD in LAMMPS: they need a classical or DeePMD "
                             "potential")
        a0 = params.lattice_constant(calculators)
        values, curves = [], {}
        table: dict[str, list[float]] = {"C11": [], "C12": [], "C44": []}
        for temperature in params.temperatures_k:
            try:
                constants, crystal = constants_at(params, a0, temperature, pair_commands)
                note = "" if crystal >= MIN_CRYSTAL_BCC else f"not bcc (a-CNA {crystal:.2f}): not a crystal's constant"
            except NoStableCrystal as unstable:  # this temperature's finding; the others still run
                constants = {name: (float("nan"), None) for name in table}
                crystal, note = unstable.bcc_fraction, str(unstable)
            for name, (value, error) in constants.items():
                values.append(PropertyValue(f"{name}_{temperature:g}K", value, "GPa", error, note=note))
                table[name].append(value)
            values.append(PropertyValue(f"bcc_fraction_{temperature:g}K", crystal, "1", note=BCC_NOTE))
        for name, column in table.items():
            curves[f"{name}_vs_temperature"] = [list(params.temperatures_k), column]
        return PropertyResult(self.name, values, curves=curves)


def constants_at(params: ElasticAtTemperatureParams, lattice_constant: float, temperature: float,
                 pair_commands: list[str]) -> tuple[dict[str, tuple[float, float]], float]:
    """C11, C12, C44 (GPa) with their standard errors at `temperature`, and the box's a-CNA bcc
    fraction after the run."""
    lmp, box = zero_pressure_crystal(params, lattice_constant, temperature, pair_commands)
    reference = box.lattice_constant_angstrom * np.array(params.cells)
    lmp.commands_list(["change_box all triclinic", nvt_command("nvt", temperature, params.timestep_fs)])

    def mean_stress(change: str, undo: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean stress (GPa, Voigt) and its standard error at the strain `change` applies."""
        if change:
            lmp.command(f"change_box all {change} remap units box")
        lmp.command(f"run {params.steps(params.settle_ps)}")
        _, stresses = run_sampled(lmp, params.steps(params.average_ps), params.samples, lambda: stress_gpa(lmp))
        if undo:
            lmp.command(f"change_box all {undo} remap units box")
        return np.mean(stresses, axis=0), block_error(np.array(stresses))

    strains = sorted([-s for s in params.strains] + [0.0] + list(params.strains))
    normal, shear = [], []
    for strain in strains:
        normal.append(mean_stress("", "") if strain == 0 else
                      mean_stress(f"x scale {1 + strain:.12f}", f"x scale {1 / (1 + strain):.12f}"))
    for strain in strains:
        shear.append(normal[strains.index(0.0)] if strain == 0 else
                     mean_stress(f"yz final {reference[2] * strain:.12f}", "yz final 0"))
    crystal = mean_bcc_fraction(lmp, params, temperature)
    lmp.close()
    x = np.array(strains)
    means, errors = np.array([m for m, _ in normal]), np.array([e for _, e in normal])
    shear_means, shear_errors = np.array([m for m, _ in shear]), np.array([e for _, e in shear])
    lateral = (means[:, YY] + means[:, ZZ]) / 2
    lateral_error = np.hypot(errors[:, YY], errors[:, ZZ]) / 2
    return {"C11": slope_with_errors(x, means[:, XX], errors[:, XX]),
            "C12": slope_with_errors(x, lateral, lateral_error),
            "C44": slope_with_errors(x, shear_means[:, YZ], shear_errors[:, YZ])}, crystal
