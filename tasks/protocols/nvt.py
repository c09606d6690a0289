"""NVT: the mobile atoms held at a temperature (or a linear ramp) by a thermostat."""

from __future__ import annotations

from ase import Atoms
from pydantic import Field

from tasks.protocols.base import Length, Protocol, Segment, Temperature, Thermostat, fix_ids, thermostat_commands


class NvtParams(Length, Temperature, Thermostat):
    pass


class Nvt(Protocol):
    name = "nvt"
    Params = NvtParams

    def segments(self, params: NvtParams, atoms: Atoms) -> list[Segment]:
        commands = thermostat_commands("mobile", params.temperature, params.end, params, params.seed, "thermostat")
        return [Segment(self.name, params.n_steps, commands, fix_ids(commands),
                        max(params.temperature, params.end))]


class CavityHealingParams(NvtParams):
    initial_temperature: float = Field(0.0, ge=0, description="K of the starting velocities: the study starts "
                                                              "from a crystal at rest and the thermostat heats it")


class CavityHealing(Nvt):
    """NVT of a crystal with a cavity (`tasks.build.cavity_crystal`): the bulk self-healing runs
    of the self-healing study, which start at 0 K (their energy rises over the first ps as the
    thermostat heats the crystal)."""

    name = "cavity_healing"
    Params = CavityHealingParams

    def initial_temperature(self, params: CavityHealingParams) -> float:
        return params.initial_temperature
