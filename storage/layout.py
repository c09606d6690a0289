"""The sweep dimensions of a study in the store: what `campaign.sweep` hands the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


class LayoutError(ValueError):
    """A sweep point that is not on the study's axes."""


@dataclass(frozen=True)
class SweepAxes:
    """Sweep dimensions of a study: dimension name -> values, plus zipped companion coordinates."""

    dims: dict[str, list[Any]]
    companions: dict[str, tuple[str, list[Any]]]  # name -> (dimension it follows, values)

    def with_system(self, systems: list[str]) -> "SweepAxes":
        """The axes with a leading ``system`` dimension (a study over several structures)."""
        return SweepAxes({"system": list(systems), **self.dims}, dict(self.companions))

    def region(self, coordinates: Mapping[str, Any]) -> dict[str, slice]:
        """The one-run region of a sweep point in the sweep dimensions."""
        region = {}
        for dim, values in self.dims.items():
            value = coordinates.get(dim)
            if value not in values:
                raise LayoutError(f"sweep point {dict(coordinates)} has {dim}={value!r}, not one of {values}")
            index = values.index(value)
            region[dim] = slice(index, index + 1)
        return region

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.dims.values())
