"""Material properties a potential is judged by, as typed plug-ins.

A new property is one module in this package (a `Property` subclass with its `Params` model
and `compute`, see `base.py`) plus one `PROPERTIES.register(...)` line below. It runs on any
potential through a `CalculatorFactory` (`calculators.py`).
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from tasks.plugin import Registry
from tasks.properties import elastic, eos, point_defects, surface
from tasks.properties.base import CalculatorFactory, Property, PropertyResult, PropertyValue, read_result, write_result

PROPERTIES: Registry[Property] = Registry("property")
PROPERTIES.register(eos.EquationOfStateProperty())
PROPERTIES.register(elastic.ElasticConstants())
PROPERTIES.register(point_defects.PointDefects())
PROPERTIES.register(surface.SurfaceEnergies())


def run_property(name: str, params: Mapping[str, Any], calculators: CalculatorFactory) -> PropertyResult:
    """One property of one potential, its parameters validated by the plug-in's model."""
    plugin = PROPERTIES[name]
    started = time.perf_counter()
    result = plugin.compute(plugin.Params(**params), calculators)
    result.wall_time_s = time.perf_counter() - started
    return result


__all__ = ["PROPERTIES", "CalculatorFactory", "Property", "PropertyResult", "PropertyValue", "read_result",
           "run_property", "write_result"]
