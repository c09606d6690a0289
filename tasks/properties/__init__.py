"""Material properties a potential is judged by, as typed plug-ins.

A new property is one module in this package (a `Property` subclass with its `Params` model
and `compute`, see `base.py`) plus one `PROPERTIES.register(...)` line below. It runs on any
potential through a `CalculatorFactory` (`calculators.py`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from tasks.plugin import Registry
from tasks.properties import (adatom, elastic, elastic_at_temperature, eos, melting, phase_stability, phonons,
                              point_defects, self_diffusion, surface, thermal_expansion)
from tasks.properties.base import CalculatorFactory, Property, PropertyResult, PropertyValue, read_result, write_result
from tasks.properties.calculators import PropertyPotential

PROPERTIES: Registry[Property] = Registry("property")
PROPERTIES.register(eos.EquationOfStateProperty())
PROPERTIES.register(elastic.ElasticConstants())
PROPERTIES.register(point_defects.PointDefects())
PROPERTIES.register(surface.SurfaceEnergies())
PROPERTIES.register(phonons.Phonons())
PROPERTIES.register(phase_stability.PhaseStability())
PROPERTIES.register(melting.MeltingPoint())
PROPERTIES.register(adatom.AdatomDiffusion())
PROPERTIES.register(thermal_expansion.ThermalExpansion())
PROPERTIES.register(elastic_at_temperature.ElasticAtTemperature())
PROPERTIES.register(self_diffusion.SelfDiffusion())


def run_property(name: str, params: Mapping[str, Any], calculators: CalculatorFactory,
                 pair_commands: list[str] | None = None) -> PropertyResult:
    """One property of one potential, its parameters validated by the plug-in's model; a
    property that runs MD also takes the potential's LAMMPS `pair_commands`."""
    plugin = PROPERTIES[name]
    started = time.perf_counter()
    parsed = plugin.Params(**params)
    result = plugin.compute(parsed, calculators, pair_commands) if plugin.runs_md else \
        plugin.compute(parsed, calculators)
    result.wall_time_s = time.perf_counter() - started
    return result


RESULT_FILE = "result.json"


def property_task(name: str, params: Mapping[str, Any], potential: PropertyPotential, output_dir: str
                  ) -> dict[str, Any]:
    """One (property, potential) of the property stage: computed, written atomically to
    `output_dir/result.json` (a DFT code's files under `output_dir/dft`), summarised. MD runs a
    DeePMD model compressed (`PropertyPotential.md_model`); the result names the file it ran."""
    md_model = None
    if PROPERTIES[name].runs_md and potential.kind == "deepmd":
        md_model = potential.md_model(output_dir)
    result = run_property(name, params, potential.calculators(Path(output_dir) / "dft"),
                          potential.pair_commands(md_model))
    result.md_model = md_model
    return result_summary(write_result(result, Path(output_dir) / RESULT_FILE))


def result_summary(path: str | Path) -> dict[str, Any]:
    """What the ledger keeps of a finished property: its wall time and values by component."""
    result = read_result(path)
    return {"wall_time_s": result.wall_time_s,
            "values": {v.component: v.value for v in result.values}}


__all__ = ["PROPERTIES", "RESULT_FILE", "CalculatorFactory", "Property", "PropertyPotential", "PropertyResult",
           "PropertyValue", "property_task", "read_result", "result_summary", "run_property", "write_result"]
