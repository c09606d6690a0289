"""NPT (Nosé-Hoover thermostat and barostat), isotropic, anisotropic, or on x and y only."""

from __future__ import annotations

from typing import Literal

from ase import Atoms
from pydantic import Field

from tasks.protocols.base import GPA_TO_BAR, Length, Protocol, Segment, Temperature


class NptParams(Length, Temperature):
    pressure: float = Field(0.0, description="GPa")
    barostat: Literal["iso", "aniso", "xy"] = Field(
        "iso", description="iso: x, y, z coupled; aniso: each axis on its own; xy: x and y on their own, z fixed "
                           "(an interface whose stacking must not change)")
    damping_ps: float = Field(0.1, gt=0, description="ps, thermostat relaxation time")
    barostat_damping_ps: float = Field(1.0, gt=0, description="ps, barostat relaxation time")


class Npt(Protocol):
    name = "npt"
    Params = NptParams

    def segments(self, params: NptParams, atoms: Atoms) -> list[Segment]:
        p, damping = params.pressure * GPA_TO_BAR, params.barostat_damping_ps
        coupling = {"iso": f"iso {p} {p} {damping}", "aniso": f"aniso {p} {p} {damping}",
                    "xy": f"x {p} {p} {damping} y {p} {p} {damping}"}[params.barostat]
        command = f"fix npt all npt temp {params.temperature} {params.end} {params.damping_ps} {coupling}"
        return [Segment(self.name, params.n_steps, [command], ["npt"], max(params.temperature, params.end))]
