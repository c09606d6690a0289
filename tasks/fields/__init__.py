"""The per-frame fields a production study can name (`production[].fields`).

A new field is one module in this package (a `FrameField` subclass with its `Params`
model and the variables it declares, see `base.py`) plus one `FIELDS.register(...)` line
below. `n_atoms` is recorded by every run, named or not.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from tasks.fields import cavity, coordination, deposit_geometry, msd, n_atoms, potential_energy, rdf, slab_temperature
from tasks.fields import structure_fractions, trajectory
from tasks.fields.base import FieldStream, FrameField, RunShape, SlabGrid, Variable
from tasks.plugin import Registry

FIELDS: Registry[type[FrameField]] = Registry("field")
FIELDS.register(slab_temperature.SlabTemperature)
FIELDS.register(coordination.Coordination)
FIELDS.register(structure_fractions.StructureFractions)
FIELDS.register(msd.MeanSquaredDisplacement)
FIELDS.register(rdf.RadialDistribution)
FIELDS.register(potential_energy.PotentialEnergy)
FIELDS.register(deposit_geometry.DepositGeometry)
FIELDS.register(n_atoms.AtomCount)
FIELDS.register(cavity.Cavity)
FIELDS.register(trajectory.Trajectory)

ALWAYS = ("n_atoms",)


def make_fields(specs: Sequence[tuple[str, Mapping[str, Any]]], shape: RunShape) -> list[FrameField]:
    """The fields named by (name, parameters) pairs, plus those every run records."""
    names = [name for name, _ in specs]
    return [FIELDS[name](shape, params) for name, params in [*specs, *((n, {}) for n in ALWAYS if n not in names)]]


__all__ = ["FIELDS", "FieldStream", "FrameField", "RunShape", "SlabGrid", "Variable", "make_fields"]
