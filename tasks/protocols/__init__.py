"""The MD protocols a campaign can name (`explore[].protocol`, `production[].protocol`).

A new protocol is one module in this package (a `Protocol` subclass with its `Params`
model, see `base.py`) plus one `PROTOCOLS.register(...)` line below.
"""

from tasks.plugin import Registry
from tasks.protocols import deposition, heat_quench, melting_coexistence, moving_restraint, npt, nvt
from tasks.protocols.base import MdParams, Protocol, Segment

PROTOCOLS: Registry[Protocol] = Registry("protocol")
PROTOCOLS.register(nvt.Nvt())
PROTOCOLS.register(npt.Npt())
PROTOCOLS.register(deposition.Deposition())
PROTOCOLS.register(heat_quench.HeatQuench())
PROTOCOLS.register(nvt.CavityHealing())
PROTOCOLS.register(melting_coexistence.MeltingCoexistence())
PROTOCOLS.register(moving_restraint.MovingRestraint())

__all__ = ["PROTOCOLS", "MdParams", "Protocol", "Segment"]
