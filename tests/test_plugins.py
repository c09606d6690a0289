"""README's "Adding a protocol, a field or a labeller", followed to the letter with toy plug-ins.

Each toy is one module (written to a temporary directory here, `tasks/<kind>/` in the
project) plus one `register` line; the config then validates them like the shipped ones and
they run without Parsl.
"""

from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pytest

from campaign.config import ConfigError, parse_config
from campaign.sweep import sweep_axes
from storage.fields import RunWriter, allocate_study, open_study
from tasks import analyze, build, label
from tasks.fields import FIELDS
from tasks.labellers import LABELLERS
from tasks.potentials import Potential
from tasks.protocols import PROTOCOLS

TOY_PROTOCOL = '''
from pydantic import Field
from tasks.protocols.base import Length, Protocol, Segment, Thermostat, fix_ids, thermostat_commands


class AnnealParams(Length, Thermostat):
    temperature: float = Field(gt=0, description="K, held after the anneal")
    anneal_temperature: float = Field(gt=0, description="K, held first")
    anneal_steps: int = Field(ge=1, description="MD steps at anneal_temperature")


class Anneal(Protocol):
    name = "toy_anneal"
    Params = AnnealParams

    def initial_temperature(self, params):
        return params.anneal_temperature

    def segments(self, params, atoms):
        hot = thermostat_commands("mobile", params.anneal_temperature, params.anneal_temperature, params,
                                  params.seed, "hot")
        hold = thermostat_commands("mobile", params.temperature, params.temperature, params, params.seed, "hold")
        return [Segment("anneal", params.anneal_steps, hot, fix_ids(hot), params.anneal_temperature),
                Segment("hold", params.n_steps, hold, fix_ids(hold), params.temperature)]
'''

TOY_FIELD = '''
import numpy as np
from pydantic import Field
from tasks.fields.base import FieldParams, FrameField, Variable


class TopParams(FieldParams):
    depth_angstrom: float = Field(2.0, gt=0, description="Å below the highest atom")


class TopAtoms(FrameField):
    name = "toy_top_atoms"
    Params = TopParams

    def variables(self):
        return {"top_atoms": Variable(("time",), {"units": "1", "long_name": "atoms near the top"})}

    def one_frame(self, frame, cache):
        z = frame.positions[:, 2]
        return {"top_atoms": int(np.sum(z > z.max() - self.params.depth_angstrom))}
'''

TOY_LABELLER = '''
from pydantic import Field
from tasks.labellers.base import Labeller
from tasks.plugin import Params


class LennardJonesSettings(Params):
    epsilon_ev: float = Field(0.1, gt=0, description="eV")
    sigma_angstrom: float = Field(2.7, gt=0, description="Å")


class LennardJones(Labeller):
    name = "toy_lj"
    Settings = LennardJonesSettings
    periodic = False

    def calculator(self, atoms, settings, work_dir, name):
        from ase.calculators.lj import LennardJones as AseLennardJones

        return AseLennardJones(epsilon=settings.epsilon_ev, sigma=settings.sigma_angstrom, rc=8.0)
'''


@pytest.fixture
def toy_modules(tmp_path, monkeypatch):
    """The three toy modules, imported from a temporary directory and registered, one line each."""
    for name, text in (("toy_protocol", TOY_PROTOCOL), ("toy_field", TOY_FIELD), ("toy_labeller", TOY_LABELLER)):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    toy_protocol, toy_field, toy_labeller = (importlib.import_module(n)
                                             for n in ("toy_protocol", "toy_field", "toy_labeller"))
    PROTOCOLS.register(toy_protocol.Anneal())  # the registry line of tasks/protocols/__init__.py
    FIELDS.register(toy_field.TopAtoms)  # ... of tasks/fields/__init__.py
    LABELLERS.register(toy_labeller.LennardJones())  # ... of tasks/labellers/__init__.py
    yield
    PROTOCOLS.unregister("toy_anneal")
    FIELDS.unregister("toy_top_atoms")
    LABELLERS.unregister("toy_lj")
    for name in ("toy_protocol", "toy_field", "toy_labeller"):
        sys.modules.pop(name, None)


def config_with(**study_changes):
    study = {"name": "toy", "protocol": "toy_anneal", "systems": ["bulk"], "potential": "meam",
             "params": {"anneal_temperature": 800, "anneal_steps": 100, "steps": 100, "trajectory_stride": 50},
             "sweep": {"temperature": [300]}, "fields": [{"toy_top_atoms": {"depth_angstrom": 1.0}}]}
    study.update(study_changes)
    return {"campaign": {"name": "toy", "workdir": "runs/toy"},
            "systems": [{"name": "bulk", "builder": "bulk", "params": {"size": 2}}],
            "label": {"engine": "toy_lj", "toy_lj": {"epsilon_ev": 0.05}},
            "production": [study]}


def test_toy_plugins_validate_like_the_shipped_ones(toy_modules):
    config = parse_config(config_with())
    assert config.label.settings() == {"epsilon_ev": 0.05, "sigma_angstrom": 2.7}
    assert config.field_choices(config.production[0]) == [("toy_top_atoms", {"depth_angstrom": 1.0})]
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(params={"anneal_temprature": 800, "steps": 100},
                                 fields=[{"toy_top_atoms": {"depth_angstrom": -1}}]))
    lines = caught.value.problems
    assert any(line.startswith("production[0].params.anneal_temprature:") and "did you mean 'anneal_temperature'"
               in line for line in lines)
    assert "production[0].params: 'toy_anneal' needs parameter 'anneal_steps' (MD steps at anneal_temperature)" \
        in lines
    assert any(line.startswith("production[0].fields[0].toy_top_atoms.depth_angstrom: must be > 0") for line in lines)


def test_toy_plugins_run_without_parsl(toy_modules, tmp_path):
    params = {"anneal_temperature": 800, "anneal_steps": 100, "temperature": 300, "steps": 100,
              "trajectory_stride": 50}
    atoms = build.bcc_bulk(3.51, 2)
    structure = build.write_structure(atoms, tmp_path / "bulk.extxyz")
    chosen = [("toy_top_atoms", {"depth_angstrom": 1.0})]
    store, point = tmp_path / "fields.zarr", {"replica": 0}
    allocate_study(store, "toy", sweep_axes({}, 1), analyze.declared_dataset(atoms, "toy_anneal", params, chosen))
    outputs = analyze.md_with_fields(structure, Potential("meam"), "toy_anneal", params, tmp_path / "run", chosen,
                                     RunWriter(store, "toy", point))
    assert outputs["status"] == "ok" and outputs["steps_done"] == 200 and outputs["n_frames"] == 4
    fields = open_study(store, "toy").sel(point)
    assert fields.top_atoms.sizes == {"time": 4} and np.all(fields.top_atoms.values >= 1)
    assert int(fields.run_status) == 1 and '"protocol": "toy_anneal"' in str(fields.provenance.values)
    batch = label.label_structures([build.rattled(atoms, 0.05, 1)], "toy_lj", {"epsilon_ev": 0.05}, tmp_path / "lj")
    assert batch.records[0].status == "ok" and batch.records[0].max_force_ev_per_angstrom > 0
