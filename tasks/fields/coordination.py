"""Coordination number: the mean per z-slab and the histogram over the box."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from tasks.fields.base import Coordinate, FrameCache, SlabField, SlabParams, Variable
from tasks.fields.neighbours import coordination_counts
from tasks.frame import Frame


def coordination_numbers(cache: FrameCache, cutoff: float, periodic_z: bool) -> np.ndarray:
    """Neighbours of each atom within `cutoff` Å (periodic in x, y; in z if `periodic_z`): the
    counts of OVITO's coordination modifier, from our cell list (tasks/fields/neighbours.py)."""
    frame = cache.frame
    return coordination_counts(frame.positions, frame.box_lo, frame.box_hi, (True, True, periodic_z), cutoff)


class CoordinationParams(SlabParams):
    cutoff_angstrom: float = Field(3.2, gt=0, description="Å, neighbours within it count")
    max_coordination: int = Field(16, ge=1, description="histogram bins 0..max; higher counts go to the last")


class Coordination(SlabField):
    name = "coordination"
    Params = CoordinationParams

    def coordinates(self) -> dict[str, Coordinate]:
        return {**super().coordinates(),
                "coordination": Coordinate(np.arange(self.params.max_coordination + 1),
                                           {"units": "1", "long_name": "number of neighbours"})}

    def variables(self) -> dict[str, Variable]:
        attrs = {"cutoff_angstrom": self.params.cutoff_angstrom}
        return {"coordination_mean": Variable(("time", "z"), {"units": "1", "long_name": "mean coordination number",
                                                              "cell_methods": "z: mean", **attrs}),
                "coordination_histogram": Variable(("time", "coordination"), {
                    "units": "1", "long_name": "fraction of atoms with this coordination", **attrs})}

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        cn = coordination_numbers(cache, self.params.cutoff_angstrom, self.shape.periodic_z)
        top = self.params.max_coordination
        return {"coordination_mean": self.slab_mean(cache, cn),
                "coordination_histogram": np.bincount(np.minimum(cn, top), minlength=top + 1) / len(cn)}
