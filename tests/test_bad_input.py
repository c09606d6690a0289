"""What a user gets wrong is refused with its YAML path (or named file), all at once, never a traceback.

A corpus of realistic mistakes in configs, on the command line and in the notebook API.
Config mistakes are mutations of one valid campaign (`BASE`); each case says the YAML path
the error must name and a fragment of its message. Warnings (legal but suspicious values)
are printed and never refuse the config.
"""

from __future__ import annotations

import copy
import gzip
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml

from campaign.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]

BASE: dict[str, Any] = {
    "campaign": {"name": "t", "workdir": "runs/t", "type_map": ["Li"], "masses_amu": {"Li": 6.94}},
    "executors": {"cpu": {"provider": "local", "max_workers": 2}, "gpu": {"provider": "local"}},
    "systems": [{"name": "bulk", "builder": "bulk", "params": {"size": 2}},
                {"name": "slab", "builder": "slab", "params": {"layers": 6, "size": [2, 2], "fixed_layers": 2}}],
    "label": {"engine": "reference", "reference": {"potential": "snap"}},
    "train": {"ensemble_size": 2, "steps": 100, "descriptor": {"sel": [40]}},
    "explore": [{"protocol": "nvt", "systems": ["bulk"], "params": {"steps": 200, "trajectory_stride": 50},
                 "sweep": {"temperature": [300, 600]}}],
    "select": {"trust_levels": [{"lo": 0.05, "hi": 0.3}], "max_labels": 2},
    "production": [{"name": "dep", "protocol": "deposition", "systems": ["slab"],
                    "params": {"duration": 1.0, "rate": 2, "falling_speed": 500, "trajectory_stride": 50},
                    "sweep": {"temperature": [200, 300]}, "fields": ["slab_temperature", "msd"]}],
    "analysis": {"slab_width_angstrom": 5.0},
}

_DELETE = object()


def changed(*edits: tuple[str, Any]) -> dict[str, Any]:
    """BASE with dotted-path edits (list indices as numbers); `_DELETE` removes a key."""
    data = copy.deepcopy(BASE)
    for dotted, value in edits:
        keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
        node: Any = data
        for key in keys[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return data


def test_base_is_valid():
    config = parse_config(copy.deepcopy(BASE))
    assert config.warnings() == []


E = changed  # short alias for the table below
HEAT_QUENCH = {"temperature_heat": 500, "heat_duration": 0.5, "temperature": 300, "duration": 0.5}
RESTRAINT = {"temperature": 300, "steps": 100, "force_constant_ev": 1.0, "cv_change_fraction": 0.1,
             "coordination_terms": [{"group_a": {"elements": ["Li"]}, "r0_angstrom": 3.2}]}

#: (id, config, YAML path the message must start with, fragment of the message)
CASES: list[tuple[str, Callable[[], dict], str, str]] = [
    # -- unknown names: a misspelt key is never ignored, and the right one is suggested
    ("campaign key", lambda: E(("campaign.nmae", "x")), "campaign.nmae", "did you mean 'name'"),
    ("top-level section", lambda: E(("traing", {})), "traing", "did you mean 'train'"),
    ("protocol parameter", lambda: E(("production.0.params.temprature", 400)), "production[0].params.temprature",
     "did you mean 'temperature'"),
    ("swept parameter", lambda: E(("production.0.sweep", {"temprature": [200, 300]})),
     "production[0].sweep.temprature", "did you mean 'temperature'"),
    ("parameter without its unit", lambda: E(("production.0.params.thermostat_height", 8)),
     "production[0].params.thermostat_height", "did you mean 'thermostat_height_angstrom'"),
    ("explore parameter", lambda: E(("explore.0.params.stride", 10)), "explore[0].params.stride",
     "did you mean 'trajectory_stride'"),
    ("labeller block", lambda: E(("label.gpaww", {"cutoff_ev": 300})), "label.gpaww", "did you mean 'gpaw'"),
    ("labeller setting", lambda: E(("label.reference.potental", "snap")), "label.reference.potental",
     "did you mean 'potential'"),
    ("gpaw setting", lambda: E(("label.gpaw", {"cutoff": 300})), "label.gpaw.cutoff", "did you mean 'cutoff_ev'"),
    ("descriptor key", lambda: E(("train.descriptor.rcut", 6.0)), "train.descriptor.rcut",
     "did you mean 'rcut_angstrom'"),
    ("loss key", lambda: E(("train.loss", {"start_pref_ee": 1})), "train.loss.start_pref_ee", "start_pref_e"),
    ("select key", lambda: E(("select.trust_level", [])), "select.trust_level", "did you mean 'trust_levels'"),
    ("analysis key", lambda: E(("analysis.slab_width", 5)), "analysis.slab_width", "slab_width_angstrom"),
    ("storage key", lambda: E(("storage", {"pth": "x.zarr"})), "storage.pth", "did you mean 'path'"),
    ("executor key", lambda: E(("executors.cpu.max_worker", 2)), "executors.cpu.max_worker", "max_workers"),
    ("builder parameter", lambda: E(("systems.0.params.sise", 2)), "systems[0].params.sise",
     "did you mean 'size'"),
    ("system key", lambda: E(("systems.0.buildr", "bulk")), "systems[0].buildr", "did you mean 'builder'"),
    ("study key", lambda: E(("production.0.fieldz", [])), "production[0].fieldz", "did you mean 'fields'"),
    ("zipped parameter", lambda: E(("production.0.sweep", {"zip": [{"rat": [1, 2], "falling_speed": [5, 10]}]})),
     "production[0].sweep.zip[0].rat", "did you mean 'rate'"),
    ("region key", lambda: E(("production.0.params.regions", [{"x": 1, "y": 1, "radios": 2}])),
     "production[0].params.regions[0].radios", "did you mean 'radius'"),
    ("field parameter", lambda: E(("production.0.fields", [{"rdf": {"rmax": 9}}])),
     "production[0].fields[0].rdf.rmax", "r_max_angstrom"),
    ("trust level key", lambda: E(("select.trust_levels", [{"lo": 0.05, "hi": 0.3, "tmax": 500}])),
     "select.trust_levels[0].tmax", "temperature_max"),
    ("restraint term key", lambda: E(("production.0.protocol", "moving_restraint"),
                                     ("production.0.params", {**RESTRAINT, "coordination_terms": [
                                         {"group_a": {"element": ["Li"]}, "r0_angstrom": 3.2}]}),
                                     ("production.0.sweep", {})),
     "production[0].params.coordination_terms[0].group_a.element", "did you mean 'elements'"),
    # -- unknown values: a name the registries do not know
    ("thermostat spelling", lambda: E(("explore.0.params.thermostat", "nose-hoover")),
     "explore[0].params.thermostat", "did you mean 'nose_hoover'"),
    ("protocol", lambda: E(("explore.0.protocol", "nvtt")), "explore[0].protocol", "did you mean 'nvt'"),
    ("builder", lambda: E(("systems.0.builder", "bcc")), "systems[0].builder", "unknown builder 'bcc'"),
    ("field", lambda: E(("production.0.fields", ["temperature_profile"])), "production[0].fields[0]",
     "unknown field 'temperature_profile'"),
    ("labeller", lambda: E(("label.engine", "gpw")), "label.engine", "did you mean 'gpaw'"),
    ("strategy", lambda: E(("select.strategy", "fps")), "select.strategy", "farthest_point"),
    ("provider", lambda: E(("executors.cpu.provider", "slurmm")), "executors.cpu.provider", "did you mean 'slurm'"),
    ("reference potential", lambda: E(("label.reference.potential", "snapp")), "label.reference.potential",
     "did you mean 'snap'"),
    ("study potential", lambda: E(("production.0.potential", "snapp")), "production[0].potential",
     "did you mean 'snap'"),
    ("barostat", lambda: E(("explore.0.protocol", "npt"), ("explore.0.params.barostat", "xyz")),
     "explore[0].params.barostat", "'iso'"),
    ("deposition thermostat", lambda: E(("production.0.params.thermostat", "nose_hoover")),
     "production[0].params.thermostat", "'langevin'"),
    ("dask cluster", lambda: E(("analysis.dask_cluster", "pbs")), "analysis.dask_cluster", "'slurm'"),
    ("lower-case element", lambda: E(("campaign.type_map", ["li"])), "campaign.type_map[0]",
     "did you mean 'Li'"),
    ("no element", lambda: E(("campaign.type_map", ["Li", "Xx"])), "campaign.type_map[1]",
     "not a chemical symbol"),
    ("interstitial site", lambda: E(("systems.0", {"name": "i", "builder": "interstitial",
                                                   "params": {"site": "hexagonal"}})),
     "systems[0].params.site", "'octahedral'"),
    ("smearing", lambda: E(("label.gpaw", {"smearing": "gaussian"})), "label.gpaw.smearing", "methfessel-paxton"),
    # -- wrong types
    ("temperature as text", lambda: E(("explore.0.sweep.temperature", ["hot", 300])),
     "explore[0].sweep.temperature[0]", "valid number"),
    ("fractional steps", lambda: E(("explore.0.params.steps", 200.5)), "explore[0].params.steps", "whole number"),
    ("size as text", lambda: E(("systems.0.params.size", "two")), "systems[0].params.size", "size"),
    ("copies as text", lambda: E(("systems.0.rattle_copies", "three")), "systems[0].rattle_copies", "integer"),
    ("sweep of a scalar", lambda: E(("explore.0.sweep.temperature", 300)), "explore[0].sweep.temperature",
     "non-empty list"),
    ("sweep of mappings", lambda: E(("explore.0.sweep.temperature", [{"t": 300}])),
     "explore[0].sweep.temperature[0]", "number, string or boolean"),
    ("empty sweep list", lambda: E(("explore.0.sweep.temperature", [])), "explore[0].sweep.temperature",
     "non-empty list"),
    ("trust levels not a list", lambda: E(("select.trust_levels", {"lo": 0.1, "hi": 0.2})),
     "select.trust_levels", "list"),
    ("type_map a string", lambda: E(("campaign.type_map", "Li")), "campaign.type_map", "list"),
    ("fields not a list", lambda: E(("production.0.fields", "msd")), "production[0].fields", "list"),
    ("params not a mapping", lambda: E(("explore.0.params", [1, 2])), "explore[0].params", "dictionary"),
    ("fractional replicas", lambda: E(("production.0.replicas", 1.5)), "production[0].replicas", "whole number"),
    ("systems a string", lambda: E(("explore.0.systems", "bulk")), "explore[0].systems", "list"),
    ("zip not a list", lambda: E(("production.0.sweep", {"zip": {"rate": [1]}})), "production[0].sweep.zip",
     "list of groups"),
    ("a field with two names", lambda: E(("production.0.fields", [{"rdf": {}, "msd": {}}])),
     "production[0].fields[0]", "one mapping"),
    # -- missing parameters
    ("deposition without rate", lambda: E(("production.0.params.rate", _DELETE)), "production[0].params",
     "needs parameter 'rate'"),
    ("deposition without falling speed", lambda: E(("production.0.params.falling_speed", _DELETE)),
     "production[0].params", "needs parameter 'falling_speed'"),
    ("deposition without temperature", lambda: E(("production.0.sweep", {})), "production[0].params",
     "needs parameter 'temperature'"),
    ("nvt without a length", lambda: E(("explore.0.params.steps", _DELETE)), "explore[0].params",
     "give 'steps' or 'duration'"),
    ("heat-quench without its heat", lambda: E(("production.0.protocol", "heat_quench"), ("production.0.sweep", {}),
                                               ("production.0.params", {"temperature": 300, "duration": 1.0})),
     "production[0].params", "needs parameter 'temperature_heat'"),
    ("heat-quench without its heating time", lambda: E(
        ("production.0.protocol", "heat_quench"), ("production.0.sweep", {}),
        ("production.0.params", {"temperature": 300, "duration": 1.0, "temperature_heat": 500})),
     "production[0].params", "needs parameter 'heat_duration'"),
    ("restraint without kappa", lambda: E(("production.0.protocol", "moving_restraint"), ("production.0.sweep", {}),
                                          ("production.0.params", {k: v for k, v in RESTRAINT.items()
                                                                   if k != "force_constant_ev"})),
     "production[0].params", "needs parameter 'force_constant_ev'"),
    ("restraint without a CV", lambda: E(("production.0.protocol", "moving_restraint"), ("production.0.sweep", {}),
                                         ("production.0.params", {k: v for k, v in RESTRAINT.items()
                                                                  if k != "coordination_terms"})),
     "production[0].params", "needs parameter 'coordination_terms'"),
    ("restraint without a target", lambda: E(("production.0.protocol", "moving_restraint"), ("production.0.sweep", {}),
                                             ("production.0.params", {k: v for k, v in RESTRAINT.items()
                                                                      if k != "cv_change_fraction"})),
     "production[0].params", "exactly one of 'cv_end' and 'cv_change_fraction'"),
    ("campaign without workdir", lambda: E(("campaign.workdir", _DELETE)), "campaign.workdir", "missing"),
    ("no campaign section", lambda: E(("campaign", _DELETE)), "campaign", "missing"),
    ("vasp without its command", lambda: E(("label.engine", "vasp")), "label.vasp", "needs parameter 'command'"),
    ("system without builder", lambda: E(("systems.0.builder", _DELETE)), "systems[0].builder", "missing"),
    ("study without name", lambda: E(("production.0.name", _DELETE)), "production[0].name", "missing"),
    ("trust level without hi", lambda: E(("select.trust_levels", [{"lo": 0.05}])), "select.trust_levels[0].hi",
     "missing"),
    ("circle without radius", lambda: E(("production.0.params.regions", [{"x": 1, "y": 1}])),
     "production[0].params.regions[0]", "circle {x, y, radius}"),
    # -- impossible values
    ("zero stride", lambda: E(("explore.0.params.trajectory_stride", 0)), "explore[0].params.trajectory_stride",
     ">= 1"),
    ("zero damping", lambda: E(("explore.0.params.damping_ps", 0)), "explore[0].params.damping_ps", "> 0 (ps)"),
    ("negative timestep", lambda: E(("explore.0.params.timestep", -0.001)), "explore[0].params.timestep", "> 0"),
    ("zero kelvin", lambda: E(("explore.0.sweep.temperature", [300, 0])), "explore[0].sweep.temperature[1]",
     "> 0 (K)"),
    ("negative rate", lambda: E(("production.0.params.rate", -1)), "production[0].params.rate", "> 0"),
    ("rate above one atom per step", lambda: E(("production.0.params.rate", 5000)), "production[0].params",
     "more than one atom per step"),
    ("a deposition that deposits nothing", lambda: E(("production.0.params.rate", 0.5)), "production[0].params",
     "deposits no atom"),
    ("stride longer than the run", lambda: E(("explore.0.params.trajectory_stride", 500)), "explore[0].systems[0]",
     "no frame would be recorded"),
    ("an average longer than the stride", lambda: E(("explore.0.params.frame_average_steps", 60)),
     "explore[0].params", "frame_average_steps (60) exceeds trajectory_stride (50)"),
    ("time-averaged fractions of instantaneous frames",
     lambda: E(("production.0.fields", ["slab_temperature", {"structure_fractions": {"time_averaged": True}}])),
     "production[0].fields[1]", "needs the protocol's frame_average_steps"),
    ("inverted trust levels", lambda: E(("select.trust_levels", [{"lo": 0.3, "hi": 0.1}])),
     "select.trust_levels[0]", "lo (0.3) must be smaller than hi"),
    ("inverted temperature range", lambda: E(("select.trust_levels", [{"lo": 0.1, "hi": 0.3, "temperature_min": 500,
                                                                       "temperature_max": 100}])),
     "select.trust_levels[0]", "temperature_min (500"),
    ("no ensemble", lambda: E(("train.ensemble_size", 0)), "train.ensemble_size", ">= 1"),
    ("test fraction 1", lambda: E(("train.test_fraction", 1.0)), "train.test_fraction", "< 1"),
    ("failure ratio 2", lambda: E(("campaign.failure_ratio_limit", 2)), "campaign.failure_ratio_limit", "<= 1"),
    ("negative mass", lambda: E(("campaign.masses_amu", {"Li": -6.94})), "campaign.masses_amu.Li", "> 0 amu"),
    ("mass of an absent element", lambda: E(("campaign.masses_amu", {"Na": 23.0})), "campaign.masses_amu.Na",
     "not in type_map"),
    ("zero blocks", lambda: E(("executors.cpu.max_blocks", 0)), "executors.cpu.max_blocks", ">= 1"),
    ("walltime in hours", lambda: E(("executors.cpu.walltime", "1h")), "executors.cpu.walltime", "pattern"),
    ("port out of range", lambda: E(("analysis.dashboard_port", 70000)), "analysis.dashboard_port", "<= 65535"),
    ("zero cut-out", lambda: E(("select.cut_out_radius_angstrom", 0)), "select.cut_out_radius_angstrom", "> 0"),
    ("accurate ratio 0", lambda: E(("select.accurate_ratio", 0)), "select.accurate_ratio", "> 0"),
    ("smoothing past the cutoff", lambda: E(("train.descriptor.rcut_smooth_angstrom", 7.0)), "train.descriptor",
     "rcut_smooth_angstrom must be smaller"),
    ("rdf bins wider than the range", lambda: E(("production.0.fields", [{"rdf": {"r_max_angstrom": 1.0,
                                                                                   "bin_width_angstrom": 2.0}}])),
     "production[0].fields[0].rdf", "bin_width_angstrom must be smaller"),
    ("inverted fit window", lambda: E(("analysis.diffusion_fit_window", [0.8, 0.2])),
     "analysis.diffusion_fit_window", "0 <= start < end <= 1"),
    ("inverted field fit window", lambda: E(("production.0.fields", [{"msd": {"fit_window": [0.9, 0.1]}}])),
     "production[0].fields[0].msd.fit_window", "0 <= start < end <= 1"),
    ("zero MPI ranks", lambda: E(("explore.0.params.mpi_ranks", 0)), "explore[0].params.mpi_ranks", ">= 1"),
    ("inverted rectangle", lambda: E(("production.0.params.regions", [{"x_min": 5, "x_max": 1, "y_min": 0,
                                                                       "y_max": 3}])),
     "production[0].params.regions[0]", "x_min < x_max"),
    ("circle outside the surface", lambda: E(("production.0.params.regions", [{"x": 500, "y": 1, "radius": 2}])),
     "production[0].systems[0]", "outside"),
    ("thermostat on no atom", lambda: E(("production.0.params.thermostat_height_angstrom", 0.01)),
     "production[0].systems[0]", "no substrate atoms to thermostat"),
    ("more fixed layers than layers", lambda: E(("systems.1.params.fixed_layers", 6)), "systems[1].params",
     "fixed_layers must be in [0, 6)"),
    ("a billion atoms", lambda: E(("systems.0.params.size", 800)), "systems[0].params",
     "about 1,024,000,000 atoms"),
    ("cavity larger than its crystal", lambda: E(("systems.0", {"name": "c", "builder": "cavity_crystal",
                                                                "params": {"cavity_angstrom": [30, 30, 30],
                                                                           "size": 4}})),
     "systems[0].params", "does not fit"),
    ("impossible cluster", lambda: E(("systems.0", {"name": "c", "builder": "random_cluster",
                                                    "params": {"n_atoms": 500, "density_g_cm3": 5.0}})),
     "systems[0].params", "cannot keep"),
    ("cluster of no atom", lambda: E(("systems.0", {"name": "c", "builder": "random_cluster",
                                                    "params": {"n_atoms": 0}})),
     "systems[0].params", "n_atoms must be >= 1"),
    ("restraint on no pair", lambda: E(("production.0.protocol", "moving_restraint"), ("production.0.sweep", {}),
                                       ("production.0.params", {**RESTRAINT, "coordination_terms": [
                                           {"group_a": {"elements": ["Li"], "z_min_angstrom": 999},
                                            "r0_angstrom": 3.2}]})),
     "production[0].systems[0]", "selects no pair"),
    ("restraint on a region the structure lacks", lambda: E(
        ("production.0.protocol", "moving_restraint"), ("production.0.sweep", {}),
        ("production.0.params", {**RESTRAINT, "coordination_terms": [
            {"group_a": {"regions": ["electrolyte"]}, "r0_angstrom": 3.2}]})),
     "production[0].systems[0]", "no 'region' array"),
    ("switching exponents", lambda: E(("production.0.protocol", "moving_restraint"), ("production.0.sweep", {}),
                                      ("production.0.params", {**RESTRAINT, "coordination_terms": [
                                          {"group_a": {"elements": ["Li"]}, "r0_angstrom": 3.2, "n": 12, "m": 6}]})),
     "production[0].params.coordination_terms[0]", "m (6) must be larger than n (12)"),
    ("vacancy index outside", lambda: E(("systems.0", {"name": "v", "builder": "vacancy",
                                                       "params": {"size": 2, "index": 99}})),
     "systems[0].params", "index must be in [0, 16)"),
    # -- checks across sections
    ("one model cannot deviate", lambda: E(("train.ensemble_size", 1)), "train.ensemble_size",
     "ensemble of at least 2"),
    ("sel shorter than type_map", lambda: E(("campaign.type_map", ["Li", "S"])), "train.descriptor.sel",
     "one per element"),
    ("element outside type_map", lambda: E(("systems.0", {"name": "a", "builder": "argyrodite_cell"}),
                                           ("label.systems", [])),
     "systems[0]", "that campaign.type_map ['Li'] lacks"),
    ("trust level for no system", lambda: E(("select.trust_levels", [{"lo": 0.05, "hi": 0.3},
                                                                     {"lo": 0.1, "hi": 0.4, "system": "slb"}])),
     "select.trust_levels[1].system", "did you mean 'slab'"),
    ("overlapping trust ranges", lambda: E(("select.trust_levels", [
        {"lo": 0.05, "hi": 0.3, "temperature_max": 500}, {"lo": 0.1, "hi": 0.4, "temperature_min": 400}])),
     "select.trust_levels[1]", "overlaps trust_levels[0]"),
    ("an explored temperature no level covers", lambda: E(("select.trust_levels", [
        {"lo": 0.05, "hi": 0.3, "temperature_max": 400}])), "explore[0]", "covers system 'bulk' at 600.0 K"),
    ("a sweep value twice", lambda: E(("explore.0.sweep.temperature", [300, 600, 300])),
     "explore[0].sweep.temperature", "repeats 300"),
    ("a parameter swept twice", lambda: E(("production.0.sweep", {"temperature": [200],
                                                                  "zip": [{"temperature": [300]}]})),
     "production[0].sweep.zip[0].temperature", "more than once"),
    ("zipped lists of different lengths", lambda: E(("production.0.sweep", {
        "temperature": [200], "zip": [{"rate": [1, 2], "falling_speed": [500]}]})),
     "production[0].sweep.zip[0]", "equal lengths"),
    ("replica as a sweep", lambda: E(("production.0.sweep.replica", [0, 1])), "production[0].sweep.replica",
     "replicas: N"),
    ("rising learning rate", lambda: E(("train.start_learning_rate", 1e-5), ("train.stop_learning_rate", 1e-3)),
     "train", "stop_learning_rate (0.001) is above start_learning_rate"),
    ("a retraining that starts below the stop rate", lambda: E(("train.retrain", [{"steps": 100,
                                                                                    "start_learning_rate": 1e-9}])),
     "train", "stop_learning_rate (3.5e-08) is above retrain[0].start_learning_rate (1e-09)"),
    ("a retraining without its steps", lambda: E(("train.retrain", [{"start_learning_rate": 1e-4}])),
     "train.retrain[0].steps", "required"),
    ("a retraining's prefactor misspelt", lambda: E(("train.retrain", [{
        "steps": 100, "start_learning_rate": 1e-4, "loss": {"start_pref_force": 10}}])),
     "train.retrain[0].loss.start_pref_force", "did you mean 'start_pref_f'"),
    ("a retraining given as one schedule, not a list", lambda: E(("train.retrain", {
        "steps": 100, "start_learning_rate": 1e-4})), "train.retrain", "valid list"),
    ("retraining schedules out of order", lambda: E(("train.retrain", [
        {"from_iteration": 2, "steps": 100, "start_learning_rate": 1e-4},
        {"from_iteration": 2, "from_previous_model": False, "steps": 300, "start_learning_rate": 1e-3}])),
     "train", "retrain[1].from_iteration (2) is not after retrain[0]'s (2)"),
    ("a new network for members continued from the previous ones", lambda: E(("train.retrain", [
        {"steps": 100, "start_learning_rate": 1e-4, "fitting_neuron": [32, 32]}])),
     "train.retrain[0]", "keeps its network"),
    ("a retraining's descriptor key misspelt", lambda: E(("train.retrain", [
        {"from_previous_model": False, "steps": 100, "start_learning_rate": 1e-3, "descriptor": {"rcut": 6.8}}])),
     "train.retrain[0].descriptor.rcut", "did you mean 'rcut_angstrom'"),
    ("a retraining's cutoff inside the section's smoothing", lambda: E(("train.retrain", [
        {"from_previous_model": False, "steps": 100, "start_learning_rate": 1e-3,
         "descriptor": {"rcut_angstrom": 4.0}}])),
     "train", "retrain[0].descriptor: rcut_smooth_angstrom must be smaller than rcut_angstrom"),
    ("a retraining's sel shorter than type_map", lambda: E(("campaign.type_map", ["Li", "S"]), (
        "train.descriptor.sel", [40, 8]), ("train.retrain", [
            {"from_previous_model": False, "steps": 100, "start_learning_rate": 1e-3, "descriptor": {"sel": [90]}}])),
     "train.retrain[0].descriptor.sel", "one per element of type_map"),
    ("a three-body term's sel shorter than type_map", lambda: E(("campaign.type_map", ["Li", "S"]), (
        "train.descriptor.sel", [40, 8]), ("train.descriptor.three_body", {"sel": [20]})),
     "train.descriptor.three_body.sel", "one per element of type_map"),
    ("a three-body term's key misspelt", lambda: E(("train.descriptor.three_body", {"rcut": 4.5})),
     "train.descriptor.three_body.rcut", "did you mean 'rcut_angstrom'"),
    ("a three-body term's cutoff inside its smoothing", lambda: E(("train.descriptor.three_body",
                                                                    {"rcut_angstrom": 3.0})),
     "train.descriptor.three_body", "rcut_smooth_angstrom must be smaller than rcut_angstrom"),
    ("a retraining schedule for the first ensemble", lambda: E(("train.retrain", [
        {"from_iteration": 0, "steps": 100, "start_learning_rate": 1e-4}])),
     "train.retrain[0].from_iteration", "must be >= 1"),
    ("an added system misspelt", lambda: E(("label.added", [{"iteration": 1, "systems": ["bulkk"]}])),
     "label.added[0].systems[0]", "did you mean 'bulk'"),
    ("an added system labelled for the first ensemble too", lambda: E(
        ("label.systems", ["bulk"]), ("label.added", [{"iteration": 1, "systems": ["bulk"]}])),
     "label.added[0].systems[0]", "is in label.systems"),
    ("a system added twice", lambda: E(("label.added", [{"iteration": 1, "systems": ["slab"]},
                                                        {"iteration": 2, "systems": ["slab"]}])),
     "label.added[1].systems[0]", "added at iteration 1 already"),
    ("labels added after the loop's last ensemble", lambda: E(
        ("select.max_iterations", 2), ("label.added", [{"iteration": 3, "systems": ["slab"]}])),
     "label.added[0].iteration", "select.max_iterations (2)"),
    ("a retraining schedule after the loop's last ensemble", lambda: E(("select.max_iterations", 2), (
        "train.retrain", [{"from_iteration": 3, "steps": 100, "start_learning_rate": 1e-4}])),
     "train.retrain[0].from_iteration", "select.max_iterations (2)"),
    ("an exploration from after the loop's last iteration", lambda: E(
        ("select.max_iterations", 2), ("explore.0.from_iteration", 2)),
     "explore[0].from_iteration", "explores iterations 0 to 1"),
    ("a production study from an iteration", lambda: E(("production.0.from_iteration", 1)),
     "production[0].from_iteration", "unknown field"),
    ("labels added for the first ensemble", lambda: E(("label.added", [{"iteration": 0, "systems": ["slab"]}])),
     "label.added[0].iteration", "must be >= 1, not 0"),
    ("labels added without a loop", lambda: E(("explore", _DELETE), ("select", _DELETE),
                                              ("label.added", [{"iteration": 1, "systems": ["slab"]}])),
     "label.added", "no explore section"),
    ("min blocks above max", lambda: E(("executors.cpu.min_blocks", 3)), "executors.cpu.min_blocks",
     "exceeds max_blocks"),
    ("init blocks above max", lambda: E(("executors.cpu.init_blocks", 2)), "executors.cpu.init_blocks",
     "exceeds max_blocks"),
    ("a slurm executor without partition", lambda: E(("executors.cpu.provider", "slurm")), "executors.cpu",
     "needs 'partition'"),
    ("a slurm walltime in seconds", lambda: E(("executors.cpu.provider", "slurm"), ("executors.cpu.partition", "debug"),
                                              ("executors.cpu.walltime", "00:01:15")),
     "executors.cpu.walltime", "slurm takes whole minutes, not '00:01:15' (Parsl would submit 00:01:00)"),
    ("shared nodes on pbs", lambda: E(("executors.cpu.provider", "pbspro"), ("executors.cpu.exclusive", False)),
     "executors.cpu.exclusive", "only slurm blocks can share nodes"),
    ("the launcher on the executor", lambda: E(("executors.cpu.launch_command", "srun")),
     "executors.cpu.launch_command", "params.mpi_launcher"),
    ("two systems of one name", lambda: E(("systems.1.name", "bulk")), "systems", "'bulk' is used twice"),
    ("two studies of one name", lambda: E(("production", [BASE["production"][0], BASE["production"][0]])),
     "production", "'dep' is used twice"),
    ("unknown explore system", lambda: E(("explore.0.systems", ["bulk16"])), "explore[0].systems[0]",
     "did you mean 'bulk'"),
    ("unknown production system", lambda: E(("production.0.systems", ["slob"])), "production[0].systems[0]",
     "did you mean 'slab'"),
    ("unknown label system", lambda: E(("label.systems", ["blk"])), "label.systems[0]", "no system named 'blk'"),
    ("unknown executor", lambda: E(("production.0.executor", "gpus")), "production[0].executor",
     "did you mean 'gpu'"),
    ("unknown train executor", lambda: E(("train.executor", "tpu")), "train.executor", "no executor named 'tpu'"),
    ("a classical potential for sulfur", lambda: E(
        ("campaign.type_map", ["Li", "P", "S", "Cl"]), ("train.descriptor.sel", [40, 8, 40, 8]),
        ("systems.1", {"name": "slab", "builder": "argyrodite_cell"}), ("label.systems", ["bulk"]),
        ("production.0.protocol", "nvt"), ("production.0.params", {"steps": 100, "trajectory_stride": 50}),
        ("production.0.potential", "meam")),
     "production[0].potential", "'meam' knows only ['Li']"),
    ("the Li-only oracle on argyrodite", lambda: E(
        ("campaign.type_map", ["Li", "P", "S", "Cl"]), ("train.descriptor.sel", [40, 8, 40, 8]),
        ("systems.0", {"name": "bulk", "builder": "argyrodite_cell"}),
        ("explore.0.sweep.temperature", [300])),
     "label.engine", "the reference labeller knows only ['Li']"),
    ("nothing to train on", lambda: E(("label.systems", []), ("production.0.potential", "final_model")), "train",
     "nothing to train on"),
    ("two systems, same atoms", lambda: E(("systems.1", {"name": "bulk2", "builder": "bulk",
                                                         "params": {"size": [2, 2, 2]}})),
     "systems[1]", "builds the same structure as 'bulk'"),
    ("a field twice", lambda: E(("production.0.fields", ["msd", {"msd": {}}])), "production[0].fields",
     "'msd' is named twice"),
    ("unknown property", lambda: E(("properties", {"compute": ["elastics"]})), "properties.compute[0]",
     "unknown property 'elastics' (did you mean 'elastic'?)"),
    ("unknown property parameter", lambda: E(("properties", {"compute": [{"surface_energies": {"layer": [4]}}]})),
     "properties.compute[0].surface_energies.layer", "did you mean 'layers'"),
    ("a strain beyond the linear range", lambda: E(("properties", {"compute": [{"elastic": {"strains": [0.1]}}]})),
     "properties.compute[0].elastic.strains", "must lie in (0, 0.05]"),
    ("descending supercell sizes", lambda: E(("properties", {"compute": [{"point_defects": {"sizes": [4, 3]}}]})),
     "properties.compute[0].point_defects.sizes", "ascending"),
    ("a property twice", lambda: E(("properties", {"compute": ["eos", {"eos": {"points": 7}}]})),
     "properties.compute", "'eos' is named twice"),
    ("no properties to compute", lambda: E(("properties", {"compute": []})), "properties.compute",
     "at least 1 item"),
    ("unknown property potential", lambda: E(("properties", {"compute": ["eos"], "potentials": ["snapp"]})),
     "properties.potentials[0]", "did you mean 'snap'"),
    ("a property potential twice", lambda: E(("properties", {"compute": ["eos"], "potentials": ["meam", "meam"]})),
     "properties.potentials", "'meam' is named twice"),
    ("a reference that is no column", lambda: E(("properties", {"compute": ["eos"], "potentials": ["snap"],
                                                                "reference": "gpaw"})),
     "properties.reference", "'gpaw' is not a column"),
    ("unknown property executor", lambda: E(("properties", {"compute": ["eos"], "executor": "cpus"})),
     "properties.executor", "did you mean 'cpu'"),
    ("a study named like the property group", lambda: E(("production.0.name", "properties")),
     "production[0].name", "the property stage's group"),
    ("a target of an unknown property", lambda: E(("select.property_targets", [
        {"property": "elastik", "component": "C44", "max_spread": 1.0}])),
     "select.property_targets[0].property", "did you mean 'elastic'"),
    ("a target with a wrong parameter", lambda: E(("select.property_targets", [
        {"property": "elastic", "component": "C44", "max_spread": 1.0, "params": {"strain": [0.01]}}])),
     "select.property_targets[0].params.strain", "did you mean 'strains'"),
    ("a target without a tolerance", lambda: E(("select.property_targets", [
        {"property": "elastic", "component": "C44"}])),
     "select.property_targets[0].max_spread", "required field is missing"),
    ("a target on an unknown executor", lambda: E(("select.property_targets", [
        {"property": "eos", "component": "bulk_modulus", "max_spread": 1.0, "executor": "gpus"}])),
     "select.property_targets[0].executor", "did you mean 'gpu'"),
]


@pytest.mark.parametrize("name,make,path,fragment", CASES, ids=[c[0] for c in CASES])
def test_config_mistake_is_refused_by_path(name, make, path, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_config(make())
    lines = caught.value.problems
    assert any(line.startswith(f"{path}:") and fragment in line for line in lines), \
        f"no line for {path} with {fragment!r}:\n" + "\n".join(lines)
    assert not any("Traceback" in line for line in lines)


def test_every_problem_of_a_config_at_once():
    """Mistakes in five sections, the cross-section ones included, come back in one report."""
    data = E(("campaign.nmae", "x"), ("production.0.params.temprature", 4), ("production.0.systems", ["slob"]),
             ("explore.0.params.thermostat", "nose-hoover"), ("select.trust_levels", [{"lo": 0.3, "hi": 0.1}]),
             ("systems.0.params.sise", 2), ("train.executor", "tpu"))
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    starts = {line.split(":")[0] for line in caught.value.problems}
    assert {"campaign.nmae", "production[0].params.temprature", "production[0].systems[0]",
            "explore[0].params.thermostat", "select.trust_levels[0]", "systems[0].params.sise",
            "train.executor"} <= starts


def test_a_failed_section_raises_no_problems_it_would_have_settled():
    """A properties-only campaign needs no training; with a mistake in its properties section
    the report names that mistake alone, not "nothing to train on" as if the section were absent."""
    data = {"campaign": {"name": "melt", "workdir": "melt", "type_map": ["Li"], "masses_amu": {"Li": 6.94}},
            "executors": {"cpu": {"provider": "local", "max_workers": 1}},
            "properties": {"potentials": ["snap"], "compute": [{"melting_point": {"method": "npt"}}]}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert [line.split(":")[0] for line in caught.value.problems] == ["properties.compute[0].melting_point.method"]
    data["properties"]["compute"][0]["melting_point"]["method"] = "nph"
    parse_config(data)


# ---------------------------------------------------------------- warnings: legal, printed, not refused


@pytest.mark.parametrize("edits,fragment", [
    ((("explore.0.params.timestep", 0.02),), "timestep 0.02 ps is above"),
    ((("explore.0.params.steps", 10 ** 12),), "more than any machine runs"),
    ((("explore.0.params.temperature", 300),), "params.temperature: also swept"),
    ((("explore.0.params.duration", 5.0),), "both 'steps' (200) and 'duration' (5.0 ps)"),
    ((("systems.1.params.vacuum_angstrom", 6.0), ("explore.0.systems", ["slab"])),
     "explore[0]: system 'slab' leaves 6.0 Å of vacuum along z"),
], ids=["timestep", "steps", "params and sweep", "steps and duration", "thin vacuum"])
def test_suspicious_values_are_warnings(edits, fragment):
    config = parse_config(E(*edits))
    assert any(fragment in w for w in config.warnings()), config.warnings()


def test_deposition_sizes_its_own_vacuum():
    """Deposition makes the box tall enough itself: a thin gap in the structure is no warning."""
    assert parse_config(E(("systems.1.params.vacuum_angstrom", 6.0))).warnings() == []


# ---------------------------------------------------------------- files and YAML


def write_config(tmp_path: Path, data: Any = None, text: str | None = None) -> Path:
    path = tmp_path / "configs" / "c.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text is not None else yaml.safe_dump(data if data is not None else BASE))
    return path


def problems_of_file(path: Path, scale: str | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, scale)
    return caught.value.problems


def test_duplicate_section(tmp_path):
    text = yaml.safe_dump(BASE) + "train: {steps: 5}\n"
    (line,) = problems_of_file(write_config(tmp_path, text=text))
    assert "key 'train' appears twice" in line and line.startswith("line ")


def test_duplicate_nested_key(tmp_path):
    text = "campaign:\n  name: t\n  workdir: runs/t\n  name: u\n"
    (line,) = problems_of_file(write_config(tmp_path, text=text))
    assert "key 'name' appears twice" in line and "first on line 2" in line


def test_not_utf8(tmp_path):
    path = write_config(tmp_path)
    path.write_bytes(b"campaign:\n  name: caf\xe9\n")
    (line,) = problems_of_file(path)
    assert line.startswith("line 2: not UTF-8 text")


def test_gzip_compressed(tmp_path):
    path = write_config(tmp_path)
    path.write_bytes(gzip.compress(yaml.safe_dump(BASE).encode()))
    assert "gzip-compressed" in problems_of_file(path)[0]


def test_not_yaml(tmp_path):
    assert "not valid YAML" in problems_of_file(write_config(tmp_path, text="campaign: {name: x\n"))[0]


@pytest.mark.parametrize("text", ["- a\n- b\n", "", "just text\n"], ids=["list", "empty", "scalar"])
def test_not_a_mapping(tmp_path, text):
    assert problems_of_file(write_config(tmp_path, text=text)) == ["(top level): must be a mapping of sections"]


def test_missing_file_and_directory(tmp_path):
    assert problems_of_file(tmp_path / "absent.yaml")[0].startswith("no such file")
    assert problems_of_file(tmp_path)[0].endswith("is not a file")


def test_workdir_that_is_a_file(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "t").write_text("not a directory")
    (line,) = problems_of_file(write_config(tmp_path))
    assert line.startswith("campaign.workdir:") and "is a file" in line


def test_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_config(write_config(tmp_path, E(("campaign.workdir", "~/runs/x"))))
    assert config.workdir == tmp_path / "home" / "runs" / "x"


def test_empty_model_and_data_directories(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "data").mkdir()
    lines = problems_of_file(write_config(tmp_path, E(("train.initial_models", ["models"]),
                                                      ("train.initial_data", ["data"]))))
    assert lines == [f"train.initial_models[0]: {tmp_path}/models holds no model files (.pth, .pb)",
                     f"train.initial_data[0]: {tmp_path}/data holds no DeePMD systems (type.raw)"]


def test_restore_from_what_is_not_an_export(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{}")
    lines = problems_of_file(write_config(tmp_path, E(("label.restore_from", ["labels", "broken"]))))
    assert lines[0] == f"label.restore_from[0]: {tmp_path}/labels is not a `campaign export` (no manifest.json)"
    assert lines[1].startswith(f"label.restore_from[1]: {tmp_path}/broken/manifest.json: unreadable (KeyError")
    lines = problems_of_file(write_config(tmp_path, E(("train.restore_from", ["labels"]))))
    assert lines == [f"train.restore_from[0]: {tmp_path}/labels is not a `campaign export` (no manifest.json)"]


def test_missing_model_files(tmp_path):
    lines = problems_of_file(write_config(tmp_path, E(("train.test_data", ["held-out"]),
                                                      ("production.0.potential", "models/m.pth"),
                                                      ("properties", {"compute": ["eos"],
                                                                      "potentials": ["snap", "models/p.pb"]}))))
    assert f"train.test_data[0]: no such file or directory: {tmp_path}/held-out" in lines
    assert any(line.startswith("production[0].potential: no such model file") for line in lines)
    assert f"properties.potentials[1]: no such model file: {tmp_path}/models/p.pb" in lines


def test_unknown_scale_and_scale_path(tmp_path):
    data = {**BASE, "scales": {"small": {"systems.7.params.size": 1}}}
    path = write_config(tmp_path, data)
    assert "did you mean 'small'" in problems_of_file(path, "smal")[0]
    assert problems_of_file(path, "small") == ["scales.small.systems.7.params.size: no such entry in the config"]


# ---------------------------------------------------------------- the command line


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "campaign.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("edits,path", [
    ((("production.0.params.temprature", 400),), "production[0].params.temprature"),
    ((("systems.0.params.size", 800),), "systems[0].params"),
    ((("explore.0.params.thermostat", "nose-hoover"),), "explore[0].params.thermostat"),
], ids=["typo", "too many atoms", "enum"])
@pytest.mark.parametrize("command", ["validate", "run", "status", "watch"])
def test_cli_refuses_a_bad_config_with_exit_2(tmp_path, command, edits, path):
    result = cli(command, str(write_config(tmp_path, E(*edits))))
    assert result.returncode == 2
    assert f"  {path}:" in result.stderr and "Traceback" not in result.stderr + result.stdout


def test_cli_prints_warnings_and_stays_valid(tmp_path):
    result = cli("validate", str(write_config(tmp_path, E(("explore.0.params.timestep", 0.02)))))
    assert result.returncode == 0, result.stderr
    assert "warning: explore[0]: timestep 0.02 ps" in result.stderr


@pytest.mark.parametrize("interval", ["-1", "0", "soon"])
def test_watch_interval_must_be_positive(tmp_path, interval):
    result = cli("watch", str(write_config(tmp_path)), "--interval", interval)
    assert result.returncode == 2 and "--interval" in result.stderr and "Traceback" not in result.stderr


def test_export_of_a_campaign_that_never_ran(tmp_path):
    result = cli("export", str(write_config(tmp_path)), str(tmp_path / "export"))
    assert result.returncode == 2 and "holds no labels" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "export").exists()
    bad = cli("export", str(write_config(tmp_path, E(("production.0.params.temprature", 400)))), str(tmp_path / "x"))
    assert bad.returncode == 2 and "  production[0].params.temprature:" in bad.stderr


def test_unknown_command_and_missing_config(tmp_path):
    assert cli("launch", "x.yaml").returncode == 2
    result = cli("validate", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("damage", ["garbage", "directory", "other database"])
def test_status_names_an_unreadable_ledger(tmp_path, damage):
    path = write_config(tmp_path)
    ledger = tmp_path / "runs" / "t" / "ledger.sqlite"
    ledger.parent.mkdir(parents=True)
    if damage == "garbage":
        ledger.write_bytes(b"\x00not an sqlite file" * 100)
    elif damage == "directory":
        ledger.mkdir()
    else:
        sqlite3.connect(ledger).execute("CREATE TABLE other (x)").connection.close()
    result = cli("status", str(path))
    assert result.returncode == 2 and str(ledger) in result.stderr and "Traceback" not in result.stderr


def test_status_reads_the_ledger_without_changing_it(tmp_path):
    from campaign.ledger import Ledger

    path = write_config(tmp_path)
    ledger = tmp_path / "runs" / "t" / "ledger.sqlite"
    with Ledger(ledger) as writer:
        writer.register_many([("a1", "label", "label", "one", {})])
    before = ledger.read_bytes()
    result = cli("status", str(path))
    assert result.returncode == 0, result.stderr
    assert ledger.read_bytes() == before


# ---------------------------------------------------------------- the notebook API


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    """A workdir whose store (at a custom `storage.path`) holds one study written by the real store code."""
    from campaign.sweep import sweep_axes
    from storage import fields as store
    from storage.api import write_campaign_record
    import xarray as xr

    workdir = tmp_path_factory.mktemp("campaign")
    target = workdir / "elsewhere" / "my-fields.zarr"
    axes = sweep_axes({"temperature": [200, 300]}, 1)
    run = xr.Dataset({"structure_fraction": (("time", "structure"), np.full((3, 4), 0.25))},
                     coords={"time": [0.1, 0.2, 0.3], "structure": np.array(["bcc", "fcc", "hcp", "other"], object)})
    store.allocate_study(target, "dep", axes, run)
    store.write_run(target, "dep", {"temperature": 200, "replica": 0}, run)
    write_campaign_record(workdir, "t", target, "0")
    return workdir


def test_notebook_api_honours_storage_path(tiny_store):
    from storage import open_campaign

    campaign = open_campaign(tiny_store)
    assert campaign.studies() == ["dep"]
    assert float(campaign.fields("dep").structure_fraction.sel(temperature=200).mean()) == 0.25


def test_notebook_api_errors(tiny_store, tmp_path):
    from storage import NotInStore, StoreNotFound, open_campaign

    with pytest.raises(StoreNotFound, match="no campaign workdir"):
        open_campaign(tmp_path / "nowhere")
    campaign = open_campaign(tiny_store)
    with pytest.raises(NotInStore, match="no study 'melting'.*it holds: dep"):
        campaign.fields("melting")
    with pytest.raises(NotInStore, match="has no field 'slab_temperature'; it has: .*structure_fraction"):
        campaign.plot.temperature_profile("dep")
    with pytest.raises(NotInStore, match="no structure 'bcx'.*bcc, fcc, hcp, other"):
        campaign.plot.phase_fractions("dep", structure="bcx")
    with pytest.raises(NotInStore, match="has no field 'msd'"):
        campaign.plot.msd("dep")


def test_notebook_api_on_damaged_files(tiny_store, tmp_path):
    import shutil

    from storage import StoreCorrupt, open_campaign

    workdir = tmp_path / "copy"
    shutil.copytree(tiny_store, workdir)
    (workdir / "campaign.json").write_text(f'{{"store": "{workdir}/elsewhere/my-fields.zarr"}}')
    (workdir / "labels.sqlite").write_bytes(b"\x00damaged" * 200)
    campaign = open_campaign(workdir)
    with pytest.raises(StoreCorrupt, match="labels.sqlite"):
        campaign.labels()
    root = workdir / "elsewhere" / "my-fields.zarr" / "zarr.json"
    root.write_text(root.read_text()[:40])  # truncated
    with pytest.raises(StoreCorrupt, match="zarr.json"):
        campaign.fields("dep")
    (workdir / "campaign.json").write_text("{")
    with pytest.raises(StoreCorrupt, match="campaign.json"):
        open_campaign(workdir)
