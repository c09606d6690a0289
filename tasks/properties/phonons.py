"""Phonons of bcc Li by finite displacements (ASE's `Phonons`): the dispersion along
Γ-H-P-Γ-N, the density of states, and the frequencies at the zone-boundary points, with
imaginary modes flagged (a dynamically unstable bcc lattice, as a broken potential gives).

One atom of the primitive cell is displaced by ± `displacement_angstrom` along x, y, z in a
supercell of `supercell`³ primitive cells (the force constants reach that far), at the
potential's own lattice constant; the acoustic sum rule is imposed. Frequencies in THz;
an imaginary frequency is reported as negative.
"""

from __future__ import annotations

import contextlib
import io
import tempfile

import numpy as np
from pydantic import Field

from tasks.properties.base import CalculatorFactory, Property, PropertyResult, PropertyValue
from tasks.properties.eos import AtEquilibrium

THZ_PER_EV = 241.79893  # ħω in eV -> ω/2π in THz
#: Below this (THz, imaginary as negative) a mode is imaginary, not the numerical noise near Γ.
IMAGINARY_THZ = -0.1
#: Γ-H-P-Γ-N, the path of bcc phonon dispersions (Beg & Nielsen's Li measurements follow it).
PATH = "GHPGN"


class PhononParams(AtEquilibrium):
    supercell: int = Field(6, ge=2, le=10, description="primitive cells per side of the displacement supercell")
    displacement_angstrom: float = Field(0.01, gt=0, le=0.1, description="Å")
    path_points: int = Field(120, ge=20, description="points along Γ-H-P-Γ-N")
    dos_mesh: int = Field(20, ge=4, description="q-points per side of the mesh of the density of states")


def _displacements(calculators: CalculatorFactory, label: str):
    """ASE's `Phonons` with a calculator of its own for each displaced cell (the one it is given
    computes the undisplaced one): a DFT code that reduced its k-points by the symmetry of the cell
    it saw first refuses a displaced one (GPAW's SymmetryBrokenError)."""
    from ase.phonons import Phonons as AsePhonons

    class Displacements(AsePhonons):
        def calculate(self, atoms_N, disp):
            if disp.name != "eq":
                atoms_N.calc = calculators(atoms_N, f"{label}-{disp.name}")
            return super().calculate(atoms_N, disp)

    return Displacements


class Phonons(Property):
    name = "phonons"
    Params = PhononParams

    def compute(self, params: PhononParams, calculators: CalculatorFactory) -> PropertyResult:
        from ase.build import bulk

        a0 = params.lattice_constant(calculators)
        primitive = bulk("Li", "bcc", a=a0)
        supercell = (params.supercell,) * 3
        displacements = _displacements(calculators, f"phonons-{params.supercell}")
        # ASE prints a line for each q-point with a (numerically) imaginary mode; the result says it once
        with tempfile.TemporaryDirectory() as cache, contextlib.redirect_stdout(io.StringIO()):
            phonons = displacements(primitive, calculators(primitive * supercell, f"phonons-{params.supercell}"),
                                    supercell=supercell, delta=params.displacement_angstrom, name=f"{cache}/phonon")
            phonons.run()
            phonons.read(acoustic=True)
            path = primitive.cell.bandpath(PATH, npoints=params.path_points)
            bands = phonons.get_band_structure(path).energies[0] * THZ_PER_EV  # (points, branches)
            special = {name: phonons.band_structure([point])[0] * THZ_PER_EV
                       for name, point in path.special_points.items() if name in "HPN"}
            dos = phonons.get_dos(kpts=(params.dos_mesh,) * 3).sample_grid(npts=200, width=0.05 / THZ_PER_EV)
        lowest = float(bands.min())
        values = [PropertyValue("lowest_frequency", lowest, "THz",
                                note="imaginary modes: the bcc lattice is dynamically unstable (or the supercell is "
                                     "too small for the force constants' range)" if lowest < IMAGINARY_THZ
                                else "no imaginary modes")]
        for name in "HNP":
            frequencies = np.sort(special[name])
            values += [PropertyValue(f"frequency_{name}_{k}", float(f), "THz") for k, f in enumerate(frequencies, 1)]
        x = path.get_linear_kpoint_axis()[0].tolist()
        curves = {f"phonon_branch_{k}": [x, bands[:, k].tolist()] for k in range(bands.shape[1])}
        curves["phonon_dos"] = [(dos.get_energies() * THZ_PER_EV).tolist(), (dos.get_weights() / THZ_PER_EV).tolist()]
        return PropertyResult(self.name, values, curves)
