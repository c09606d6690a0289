"""What every material property shares: a name, a parameter model, and one computation over
a potential given as ASE calculators, returning typed values with units.

A property runs on any potential through a `CalculatorFactory` (`calculators.py`): the
classical ones through LAMMPS, DeePMD models through DeePMD-kit's ASE calculator, and the
DFT labellers themselves for the reference column. Results are `PropertyResult`s, written
and read as JSON by `write_result` / `read_result` (the writer owns the reader).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
from ase import Atoms

from tasks.atomic import write_json

#: An ASE calculator for these atoms; the name labels its files (a DFT code's logs).
CalculatorFactory = Callable[[Atoms, str], Any]

EV_PER_A3_IN_GPA = 160.21766208
EV_PER_A2_IN_J_PER_M2 = 16.021766208


@dataclass(frozen=True)
class PropertyValue:
    """One component of a property: `C11` in GPa, `surface_energy_110` in eV/Å², ..."""

    component: str
    value: float
    unit: str
    uncertainty: float | None = None  # a fit's standard error, or the change over the last size step
    note: str = ""


@dataclass
class PropertyResult:
    property: str
    values: list[PropertyValue]
    curves: dict[str, list[list[float]]] = field(default_factory=dict)  # what the plots show, per curve
    wall_time_s: float = 0.0
    md_model: str | None = None  # the DeePMD model file MD ran (a compressed copy), None for other potentials

    def value(self, component: str) -> PropertyValue:
        for value in self.values:
            if value.component == component:
                return value
        raise KeyError(f"{self.property} has no component '{component}'; it has "
                       f"{', '.join(v.component for v in self.values)}")


def write_result(result: PropertyResult, path: str | Path) -> Path:
    """Atomically: a result file that exists is complete."""
    return write_json(path, asdict(result))


def read_result(path: str | Path) -> PropertyResult:
    data = json.loads(Path(path).read_text())
    return PropertyResult(data["property"], [PropertyValue(**v) for v in data["values"]], data["curves"],
                          data["wall_time_s"], data.get("md_model"))  # results written before it have none


class Property(ABC):
    """A property plug-in: `name`, a `Params` model, and `compute`."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    #: A property that runs MD in LAMMPS is also given the potential's pair commands (a DFT
    #: labeller has none: the stage records it as not run for those).
    runs_md: ClassVar[bool] = False

    @abstractmethod
    def compute(self, params: Any, calculators: CalculatorFactory) -> PropertyResult:
        """The property of the potential behind `calculators` (wall time filled in by `run_property`)."""


def energy(atoms: Atoms, calculators: CalculatorFactory, name: str) -> float:
    """Potential energy (eV) of `atoms` as they are."""
    atoms = atoms.copy()
    atoms.calc = calculators(atoms, name)
    return float(atoms.get_potential_energy())


def relaxed_energy(atoms: Atoms, calculators: CalculatorFactory, name: str, fmax_ev_per_angstrom: float,
                   max_steps: int = 500, keep_constraints: bool = False) -> tuple[float, Atoms]:
    """Energy (eV) after relaxing the ions at fixed cell (ASE's BFGS), and the relaxed atoms;
    every ion free unless `keep_constraints` (a fixed bottom, an atom held to a line)."""
    from ase.optimize import BFGS

    atoms = atoms.copy()
    if not keep_constraints:
        atoms.set_constraint()
    atoms.calc = calculators(atoms, name)
    BFGS(atoms, logfile=None).run(fmax=fmax_ev_per_angstrom, steps=max_steps)
    return float(atoms.get_potential_energy()), atoms


def linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and its standard error of a least-squares line."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    (slope, intercept), residuals, *_ = np.polyfit(x, y, 1, full=True)
    dof = max(len(x) - 2, 1)
    variance = float(residuals[0]) / dof if len(residuals) else 0.0
    return float(slope), float(np.sqrt(variance / np.sum((x - x.mean()) ** 2)))


def last_change(series: list[float]) -> float | None:
    """How much the last step of a convergence series (supercell size, slab thickness) moved
    it: the uncertainty of its last value."""
    return abs(series[-1] - series[-2]) if len(series) > 1 else None
