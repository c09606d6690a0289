"""Mean potential energy per atom, over the box and per z-slab."""

from __future__ import annotations

from typing import Any

from tasks.fields.base import FrameCache, SlabField, Variable
from tasks.frame import Frame


class PotentialEnergy(SlabField):
    name = "potential_energy"

    def variables(self) -> dict[str, Variable]:
        # float64: a mean of about -1.9 eV/atom whose meV changes matter
        return {"potential_energy": Variable(("time",), {"units": "eV/atom", "long_name": "mean potential energy"},
                                             "float64"),
                "potential_energy_by_slab": Variable(("time", "z"), {"units": "eV/atom", "long_name":
                                                     "mean potential energy in the slab"}, "float64")}

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        return {"potential_energy": float(frame.potential_energy.mean()),
                "potential_energy_by_slab": self.slab_mean(cache, frame.potential_energy)}
