"""NVT with a Colvars harmonic restraint whose centre moves along a coordination-number CV.

The CV is a linear combination of coordination numbers (the interface-nucleation study's
CN_LiLi - CN_LiS - CN_LiP - CN_LiCl with per-pair R0 3.2/3.0/4.0/4.0 Å):

    CV = Σ_terms c · CN_AB,   CN_AB = Σ_{i∈A} Σ_{j∈B, j≠i} (1 - (r/R0)^n) / (1 - (r/R0)^m)

Groups may overlap (the study's Li-Li term counts the electrolyte's Li against the
electrolyte's and the anode's Li). Colvars' `coordNum` needs disjoint groups, so each term
is split into disjoint parts: with I = A∩B, A' = A∖B, B' = B∖A,
CN_AB = 2·selfCoordNum(I) + coordNum(I, B') + coordNum(A', I) + coordNum(A', B').
A term without `group_b` counts each pair within `group_a` once (Colvars `selfCoordNum`).

The restraint E = ½ κ (CV - s0(t))² moves s0 linearly from `cv_start` (default: the
structure's own CV) to `cv_end` (or `cv_start × (1 + cv_change_fraction)`) over the run.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
from ase import Atoms
from pydantic import Field, model_validator

from tasks.plugin import Params
from tasks.protocols.base import Length, Protocol, Segment, Thermostat, fix_ids, thermostat_commands


class AtomSelection(Params):
    """Atoms by element, region, LAMMPS id (1-based) and initial height; the criteria combine."""

    elements: list[str] | None = Field(None, min_length=1)
    regions: list[str] | None = Field(None, min_length=1, description="values of the structure's per-atom "
                                                                       "'region' array (set by its builder)")
    ids: list[int] | None = Field(None, min_length=1)
    z_min_angstrom: float | None = None
    z_max_angstrom: float | None = None

    def indices(self, atoms: Atoms) -> np.ndarray:
        """0-based indices of the selected atoms."""
        keep = np.ones(len(atoms), dtype=bool)
        if self.elements is not None:
            keep &= np.isin(atoms.get_chemical_symbols(), self.elements)
        if self.regions is not None:
            if "region" not in atoms.arrays:
                raise ValueError("the structure has no 'region' array to select by")
            known = sorted(set(atoms.arrays["region"]))
            unknown = sorted(set(self.regions) - set(known))
            if unknown:
                raise ValueError(f"regions {unknown} are not in the structure; it has {known}")
            keep &= np.isin(atoms.arrays["region"], self.regions)
        if self.ids is not None:
            ids = np.asarray(self.ids)
            if ids.min() < 1 or ids.max() > len(atoms):
                raise ValueError(f"ids must lie in [1, {len(atoms)}]")
            chosen = np.zeros(len(atoms), dtype=bool)
            chosen[ids - 1] = True
            keep &= chosen
        z = atoms.positions[:, 2]
        if self.z_min_angstrom is not None:
            keep &= z >= self.z_min_angstrom
        if self.z_max_angstrom is not None:
            keep &= z <= self.z_max_angstrom
        return np.flatnonzero(keep)


class CoordinationTerm(Params):
    group_a: AtomSelection
    group_b: AtomSelection | None = Field(None, description="omitted: pairs within group_a, each counted once")
    r0_angstrom: float = Field(gt=0, description="Å, the switching function's R0")
    coefficient: float = Field(1.0, description="weight of this coordination number in the CV")
    n: int = Field(6, ge=1, description="numerator exponent")
    m: int = Field(12, ge=2, description="denominator exponent")

    @model_validator(mode="after")
    def _exponents(self) -> "CoordinationTerm":
        if self.m <= self.n:
            raise ValueError(f"m ({self.m}) must be larger than n ({self.n})")
        return self


class MovingRestraintParams(Length, Thermostat):
    temperature: float = Field(gt=0, description="K")
    coordination_terms: list[CoordinationTerm] = Field(min_length=1)
    cv_start: float | None = Field(None, description="default: the starting structure's CV")
    cv_end: float | None = None
    cv_change_fraction: float | None = Field(None, description="cv_end = cv_start × (1 + this)")
    force_constant_ev: float = Field(gt=0, description="eV, κ of the harmonic restraint")

    @model_validator(mode="after")
    def _target_given(self) -> "MovingRestraintParams":
        if (self.cv_end is None) == (self.cv_change_fraction is None):
            raise ValueError("give exactly one of 'cv_end' and 'cv_change_fraction' for the moving restraint")
        return self


def switching_sum(atoms: Atoms, first: Sequence[int], second: Sequence[int] | None, r0: float, n: int, m: int) -> float:
    """Σ (1 - (r/R0)^n) / (1 - (r/R0)^m) over pairs (first × second, or pairs within first), minimum image."""
    from ase.geometry import get_distances

    if len(first) == 0 or (second is not None and len(second) == 0):
        return 0.0
    positions = atoms.positions
    other = positions[list(second)] if second is not None else None
    _, distances = get_distances(positions[list(first)], other, cell=atoms.cell, pbc=atoms.pbc)
    if second is None:
        distances = distances[np.triu_indices(len(first), k=1)]
    ratio = np.asarray(distances, dtype=float).ravel() / r0
    ratio = np.where(np.isclose(ratio, 1.0), 1.0 + 1e-9, ratio)  # the limit n/m at r = R0
    return float(np.sum((1 - ratio ** n) / (1 - ratio ** m)))


def _parts(term: CoordinationTerm, atoms: Atoms) -> list[tuple[float, np.ndarray, np.ndarray | None]]:
    """(coefficient, group1, group2 or None for self) with disjoint groups, empty parts dropped."""
    a = term.group_a.indices(atoms)
    if term.group_b is None:
        parts = [(1.0, a, None)]
    else:
        b = term.group_b.indices(atoms)
        both, only_a, only_b = np.intersect1d(a, b), np.setdiff1d(a, b), np.setdiff1d(b, a)
        parts = [(2.0, both, None), (1.0, both, only_b), (1.0, only_a, both), (1.0, only_a, only_b)]
    kept = [(c * term.coefficient, g1, g2) for c, g1, g2 in parts
            if len(g1) > (1 if g2 is None else 0) and (g2 is None or len(g2) > 0)]
    if not kept:
        raise ValueError("a coordination term selects no pair of atoms")
    return kept


def coordination_cv(atoms: Atoms, terms: Sequence[CoordinationTerm]) -> float:
    """The CV of a structure, as Colvars computes it from the same terms."""
    return sum(c * switching_sum(atoms, g1, g2, t.r0_angstrom, t.n, t.m)
               for t in terms for c, g1, g2 in _parts(t, atoms))


def _atom_numbers(indices: np.ndarray) -> str:
    return " ".join(str(i + 1) for i in indices)


def colvars_config(atoms: Atoms, params: MovingRestraintParams, start: float, end: float, steps: int) -> str:
    components = []
    for term in params.coordination_terms:
        for coefficient, first, second in _parts(term, atoms):
            kind = "selfCoordNum" if second is None else "coordNum"
            groups = f"    group1 {{ atomNumbers {_atom_numbers(first)} }}\n"
            if second is not None:
                groups += f"    group2 {{ atomNumbers {_atom_numbers(second)} }}\n"
            components.append(f"  {kind} {{\n    componentCoeff {coefficient}\n{groups}"
                              f"    cutoff {term.r0_angstrom}\n    expNumer {term.n}\n    expDenom {term.m}\n  }}")
    body = "\n".join(components)
    return (f"colvarsTrajFrequency {params.trajectory_stride}\n"
            f"colvar {{\n  name coordination\n{body}\n}}\n"
            f"harmonic {{\n  colvars coordination\n  centers {start}\n  targetCenters {end}\n"
            f"  targetNumSteps {steps}\n  forceConstant {params.force_constant_ev}\n}}\n")


class MovingRestraint(Protocol):
    name = "moving_restraint"
    Params = MovingRestraintParams

    def cv_range(self, params: MovingRestraintParams, atoms: Atoms) -> tuple[float, float]:
        start = params.cv_start if params.cv_start is not None else coordination_cv(atoms, params.coordination_terms)
        end = params.cv_end if params.cv_end is not None else start * (1 + params.cv_change_fraction)
        return start, end

    def segments(self, params: MovingRestraintParams, atoms: Atoms) -> list[Segment]:
        start, end = self.cv_range(params, atoms)
        # The runner writes the Colvars file (on rank 0) and turns this marker into `fix colvars`.
        config = colvars_config(atoms, params, start, end, params.n_steps)
        commands = [f"#colvars {json.dumps(config)}",
                    *thermostat_commands("mobile", params.temperature, params.temperature, params, params.seed,
                                         "thermostat")]
        return [Segment(self.name, params.n_steps, commands, fix_ids(commands), params.temperature)]

    def total_steps(self, params: MovingRestraintParams, atoms: Atoms) -> int:
        for term in params.coordination_terms:
            _parts(term, atoms)  # a term that selects no pair cannot be restrained
        return params.n_steps
