"""The campaign YAML schema (pydantic v2) and its loader.

A config is read once, validated completely, and every problem is reported as one line
that names its YAML path, e.g. ``production[0].sweep.temperature[2]: must be > 0 K``.
Nothing runs on an invalid config, so a typo can never cost finished work.

What a block names is checked against its plug-in (`tasks.protocols`, `tasks.fields`,
`tasks.labellers`, `tasks.potentials`, `tasks.build`): a protocol's parameters merged with
every sweep point, a field's parameters, a labeller's settings, a builder's parameters.
Sections are validated one by one and list entries one by one, and the checks across
sections (names that must resolve, elements, trust levels, what a protocol can do with a
structure) run on everything that validated, so one `campaign validate` reports all.
Suspicious but legal values are `CampaignConfig.warnings()`, printed, never refused.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import numpy as np
import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, create_model,
                      model_validator)
from pydantic_core import PydanticCustomError

from campaign.sweep import SweepPoint, expand_sweep, parameter_paths, sweep_problems
from storage.labels import EXPORT_MANIFEST, read_export_manifest
from tasks.digest import json_digest
from tasks.fields import FIELDS
from tasks.geometry import IMAGE_GAP_ANGSTROM, VACUUM_GAP_ANGSTROM, widest_gaps
from tasks.label import settings_hash
from tasks.labellers import LABELLERS
from tasks.plugin import did_you_mean, field_at, message_of, names_at, problems as plugin_problems, real_location
from tasks.potentials import POTENTIALS, ClassicalPotential, classical_names
from tasks.properties import PROPERTIES
from tasks.properties.published import PUBLISHED_COLUMNS
from tasks.protocols import PROTOCOLS

Location = list[str | int]


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds one 'path: message' line each."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class Strict(BaseModel):
    """Base of every section: unknown keys are errors (a misspelt key is never ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _refuse(problems: list[tuple[Location, str]]) -> None:
    if problems:
        raise PydanticCustomError("problems", "{summary}", {"summary": "invalid", "problems": problems})


# ---------------------------------------------------------------- campaign / executors


class CampaignSection(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="used in directory and store names")
    workdir: Path = Field(description="where the ledger, labels, models and fields.zarr live")
    seed: int = Field(0, ge=0)
    type_map: list[str] = Field(default_factory=lambda: ["Li"], min_length=1, description="chemical symbols")
    masses_amu: dict[str, float] = Field(default_factory=dict, description="amu; defaults to ASE's standard masses")
    failure_ratio_limit: float = Field(0.05, ge=0, le=1, description="per stage; above it the campaign stops")
    max_retries: int = Field(2, ge=0, description="for transient failures (worker lost, walltime)")

    @model_validator(mode="after")
    def _elements(self) -> "CampaignSection":
        from ase.data import chemical_symbols

        problems: list[tuple[Location, str]] = []
        for i, symbol in enumerate(self.type_map):
            if symbol not in chemical_symbols[1:]:
                problems.append((["type_map", i], f"'{symbol}' is not a chemical symbol"
                                                  f"{did_you_mean(symbol, chemical_symbols[1:])}"))
        problems += [(["type_map"], f"'{s}' appears twice") for s in sorted({s for s in self.type_map
                                                                             if self.type_map.count(s) > 1})]
        problems += [(["masses_amu", e], f"names an element not in type_map {self.type_map}")
                     for e in self.masses_amu if e not in self.type_map]
        problems += [(["masses_amu", e], f"must be > 0 amu, not {m}") for e, m in self.masses_amu.items() if m <= 0]
        _refuse(problems)
        return self

    def mass_of(self, element: str) -> float:
        from ase.data import atomic_masses, atomic_numbers

        return self.masses_amu.get(element, float(atomic_masses[atomic_numbers[element]]))


class ExecutorSection(Strict):
    """One Parsl executor. `local` runs on this machine; the others pass through to Parsl."""

    provider: Literal["local", "slurm", "pbspro", "lsf"] = "local"
    max_workers: int = Field(1, ge=1, description="workers per node (block)")
    cores_per_worker: float = Field(1.0, gt=0)
    available_accelerators: int | list[str] = Field(0, description="GPUs bound one per worker")
    partition: str | None = None
    queue: str | None = None
    account: str | None = None
    nodes_per_block: int = Field(1, ge=1)
    init_blocks: int = Field(1, ge=0)
    min_blocks: int = Field(0, ge=0)
    max_blocks: int = Field(1, ge=1)
    walltime: str = Field("01:00:00", pattern=r"^\d+:\d{2}:\d{2}$")
    exclusive: bool = Field(True, description="slurm: whole nodes per block (false: share nodes with other jobs)")
    worker_init: str = ""
    scheduler_options: str = ""

    @model_validator(mode="before")
    @classmethod
    def _no_launch_command(cls, data: Any) -> Any:
        if isinstance(data, dict) and "launch_command" in data:
            _refuse([(["launch_command"], "is gone: a launcher is set where it runs, label.<engine>.command for DFT "
                                          "(e.g. 'mpirun -np 32 vasp_std') and params.mpi_launcher with "
                                          "params.mpi_ranks for MD (e.g. 'srun --overlap -n {ranks}')")])
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "ExecutorSection":
        problems: list[tuple[Location, str]] = []
        if self.provider == "slurm" and not self.partition:
            problems.append(([], "a slurm executor needs 'partition'"))
        if self.provider in ("slurm", "lsf") and not self.walltime.endswith(":00"):
            # Parsl submits whole minutes to both, dropping the seconds: what is written must be what runs
            problems.append((["walltime"], f"{self.provider} takes whole minutes, not {self.walltime!r} "
                                           f"(Parsl would submit {self.walltime[:-3]}:00)"))
        if self.provider != "slurm" and not self.exclusive:
            problems.append((["exclusive"], "only slurm blocks can share nodes here"))
        if self.min_blocks > self.max_blocks:
            problems.append((["min_blocks"], f"min_blocks ({self.min_blocks}) exceeds max_blocks ({self.max_blocks})"))
        if self.init_blocks > self.max_blocks:
            problems.append((["init_blocks"], f"init_blocks ({self.init_blocks}) exceeds max_blocks "
                                              f"({self.max_blocks})"))
        if isinstance(self.available_accelerators, int) and self.available_accelerators < 0:
            problems.append((["available_accelerators"], "must be >= 0"))
        _refuse(problems)
        return self


def _default_executors() -> dict[str, ExecutorSection]:
    return {"cpu": ExecutorSection(max_workers=2), "gpu": ExecutorSection(max_workers=1)}


# ---------------------------------------------------------------- systems


class SystemSection(Strict):
    """A named structure made by a builder of `tasks.build` with these keyword parameters."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    builder: str
    params: dict[str, Any] = Field(default_factory=dict)
    rattle_copies: int = Field(0, ge=0, description="extra copies with rattled positions (for labels)")
    rattle_stdev_angstrom: float = Field(0.05, ge=0)
    #: The built structure and its digest (two systems that build the same atoms are an error).
    _atoms: Any = PrivateAttr(None)
    _structure_digest: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _builder_accepts_params(self) -> "SystemSection":
        from tasks.build import BUILDERS, MAX_ATOMS

        if self.builder not in BUILDERS:
            _refuse([(["builder"], BUILDERS.unknown(self.builder))])
        builder = BUILDERS[self.builder]
        problems = [(["params", *path] if path else ["params"], message)
                    for path, message in plugin_problems(builder.Params, self.params, f"'{self.builder}'")]
        _refuse(problems)
        estimate = builder.estimate_atoms(self.params)
        if estimate > MAX_ATOMS:
            _refuse([(["params"], f"'{self.builder}' would build about {estimate:,} atoms, more than the "
                                  f"{MAX_ATOMS:,} a campaign accepts (tasks.build.MAX_ATOMS)")])
        try:  # builders are cheap: a structure that cannot be built is a config error, found now
            atoms = builder(**self.params)
        except (ValueError, TypeError) as error:
            _refuse([(["params"], f"'{self.builder}' cannot build this structure: {error}")])
        rows = np.column_stack([atoms.numbers, atoms.positions.round(4)])
        rows = rows[np.lexsort(rows.T[::-1])]  # the same atoms listed in another order are the same
        rattle = f"{self.rattle_copies} {self.rattle_stdev_angstrom}".encode()  # labels differ: not a duplicate
        self._structure_digest = hashlib.sha256(rows.tobytes() + atoms.cell.array.round(4).tobytes()
                                                + rattle).hexdigest()
        self._atoms = atoms
        return self

    @property
    def atoms(self) -> Any:
        """The structure as built at validation (a copy: callers may change it)."""
        return self._atoms.copy()


# ---------------------------------------------------------------- label / train


class AddedLabels(Strict):
    """Systems labelled for a later ensemble: a gap a property check found after the first
    ensembles trained. Giving them to `label.systems` would change the data of every ensemble,
    which would all train again; added here, the ensembles before `iteration` keep their task ids."""

    iteration: int = Field(ge=1, description="the first ensemble (models/iter-<iteration>) that trains on them")
    systems: list[str] = Field(min_length=1)


class LabelSection(Strict):
    """`engine` names a labeller of `tasks.labellers`; its settings are the block named after it."""

    engine: str = "gpaw"
    executor: str = "cpu"
    systems: list[str] | None = Field(None, description="systems the first ensemble trains on; "
                                                          "default: all of them but the added ones")
    blocks: dict[str, dict[str, Any]] = Field(default_factory=dict, description="settings by labeller, written "
                                                                              "as label.<engine>: {...}")
    restore_from: list[Path] = Field(default_factory=list, description="`campaign export` directories whose labels "
                                                                       "(same settings) and iterations' picked frames "
                                                                       "are taken, not recomputed")
    added: list[AddedLabels] = Field(default_factory=list, description="systems labelled with the others whose "
                                                                      "labels join the training data from a later "
                                                                      "iteration's ensemble on")

    @model_validator(mode="before")
    @classmethod
    def _collect_blocks(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        blocks = dict(data.pop("blocks", {}) or {})
        for name in list(data):
            if name in LABELLERS:
                block = data.pop(name)
                if block is not None:  # `label.vasp: null` (a scale override) removes the block
                    blocks[name] = block
        known = [*(n for n in cls.model_fields if n != "blocks"), *LABELLERS]
        _refuse([([name], f"unknown field{did_you_mean(name, known)}; known: {', '.join(known)}")
                 for name in data if name not in cls.model_fields])
        data["blocks"] = blocks
        return data

    @model_validator(mode="after")
    def _settings_valid(self) -> "LabelSection":
        if self.engine not in LABELLERS:
            _refuse([(["engine"], LABELLERS.unknown(self.engine))])
        problems: list[tuple[Location, str]] = []
        for name, block in {self.engine: {}, **self.blocks}.items():
            if not isinstance(block, dict):
                problems.append(([name], "must be a mapping of settings"))
                continue
            problems += [([name, *path], message) for path, message in
                         plugin_problems(LABELLERS[name].Settings, block, f"the {name} labeller")]
        _refuse(problems)
        return self

    def added_at(self) -> dict[str, int]:
        """Each added system and the iteration whose ensemble first trains on its labels."""
        return {name: entry.iteration for entry in self.added for name in entry.systems}

    def settings(self, engine: str | None = None) -> dict[str, Any]:
        """The engine's settings with every default filled in (what the labels are computed with)."""
        engine = engine or self.engine
        return LABELLERS[engine].Settings.model_validate(self.blocks.get(engine, {})).model_dump(mode="json")


class ThreeBodySection(Strict):
    """DeePMD's `se_e3` beside the section's `se_e2_a` (a `hybrid` descriptor): an embedding of
    the angle between each pair of neighbours within its own, shorter cutoff. se_e2_a sees the
    angles only through its `axis_neuron` products; this term gives the network the bond angles
    directly, at a cost that grows as sel squared (the defaults hold bcc Li's first two shells,
    2.97 and 3.44 Å, and a liquid's or a compressed cell's neighbours within 4 Å)."""

    rcut_angstrom: float = Field(4.0, gt=0)
    rcut_smooth_angstrom: float = Field(3.5, ge=0)
    sel: list[int] = Field(default_factory=lambda: [24], description="neighbours per element of type_map")
    neuron: list[int] = Field(default_factory=lambda: [2, 4, 8])

    @model_validator(mode="after")
    def _smooth_below_cut(self) -> "ThreeBodySection":
        _check_cutoffs(self)
        return self


class DescriptorSection(Strict):
    type: Literal["se_e2_a"] = "se_e2_a"
    rcut_angstrom: float = Field(6.0, gt=0)
    rcut_smooth_angstrom: float = Field(5.0, ge=0)
    sel: list[int] = Field(default_factory=lambda: [60], description="neighbours per element of type_map")
    neuron: list[int] = Field(default_factory=lambda: [10, 20, 40])
    axis_neuron: int = Field(8, ge=1)
    three_body: ThreeBodySection | None = Field(None, description="an se_e3 term beside se_e2_a; none by default")

    @model_validator(mode="after")
    def _smooth_below_cut(self) -> "DescriptorSection":
        _check_cutoffs(self)
        return self

    def as_arguments(self) -> dict[str, Any]:
        """What `tasks.train` takes, and a member's task id hashes: without `three_body` where
        there is none, so that the members of configs written before it keep their ids."""
        return self.model_dump(exclude_none=True)


def _check_cutoffs(section: ThreeBodySection | DescriptorSection) -> None:
    if section.rcut_smooth_angstrom >= section.rcut_angstrom:
        raise ValueError("rcut_smooth_angstrom must be smaller than rcut_angstrom")
    if any(n < 1 for n in section.sel + section.neuron):
        raise ValueError("sel and neuron entries must be >= 1")


# A retraining's changes to the descriptor it inherits: DescriptorSection's keys, none required; its
# bounds and defaults stay there (checked once the changes are applied, `TrainSection.network`).
DescriptorChanges = create_model("DescriptorChanges", __base__=Strict,
                                 **{name: (field.annotation | None, None)
                                    for name, field in DescriptorSection.model_fields.items()})


class LossSection(Strict):
    """Prefactors move from `start` to `limit` with the learning rate (DeePMD's schedule)."""

    start_pref_e: float = Field(0.02, ge=0)
    limit_pref_e: float = Field(1.0, ge=0)
    start_pref_f: float = Field(1000.0, ge=0)
    limit_pref_f: float = Field(2.0, ge=0)
    start_pref_v: float = Field(0.02, ge=0)
    limit_pref_v: float = Field(1.0, ge=0)


def exploration_run_name(section_index: int, system: str, point_id: str) -> str:
    """An exploration run's name: its `explore` entry, system and sweep point."""
    return f"e{section_index}-{system}-{point_id[:6]}"


def pick_name(iteration: int, run_name: str, step: int) -> str:
    """A picked frame's label name: the iteration, the run and the MD step it came from."""
    return f"iter{iteration}-{run_name}-step{step}"


# How much more often DeePMD draws the labels whose names match a pattern (fnmatch, first match
# wins; labels are `<system>-<copy>`, copy 000 the structure as built, `iter<N>-...` the picks):
# `tasks.train.sampling_probabilities`.
SystemWeights = dict[str, Annotated[float, Field(gt=0)]]


class RetrainSection(Strict):
    """The schedule of the members of the loop's later ensembles, from `from_iteration` until the
    next entry's. By default each member starts from the previous iteration's (DP-GEN's
    `training_reuse_*`, dpgen2's `init_model_*`): a shorter run from a lower rate keeps what the
    previous member learnt and fits the new labels; it decays to the section's
    `stop_learning_rate`. Without `loss`, the section's prefactors restart from their `start`
    values, as DP-GEN's do; with it (DP-GEN's `training_reuse_start_pref_*`, whole), e.g.
    constant prefactors, the restart's force-heavy first steps do not undo what the previous
    member learnt of the curvature. `from_previous_model: false` trains the members from nothing
    on this schedule instead (DP-GEN's default): a continued member keeps whole groups of labels
    offset that a new one fits (docs/li-potential.md), and the ensembles before
    `from_iteration` keep their task ids. Members from nothing may also have another network:
    `descriptor` changes the keys it names of the one before (the section's, or an earlier
    entry's), `fitting_neuron` replaces its fitting net; later entries inherit it, as continued
    members must (DeePMD starts a member only from a model of its own network)."""

    from_iteration: int = Field(1, ge=1, description="the first ensemble (models/iter-<from_iteration>) on it")
    from_previous_model: bool = True
    steps: int = Field(ge=1)
    start_learning_rate: float = Field(gt=0)
    loss: LossSection | None = None
    descriptor: DescriptorChanges | None = Field(None, description="members from nothing only: the keys of the "
                                                 "descriptor that change, e.g. {rcut_angstrom: 6.8, sel: [90]}")
    fitting_neuron: list[int] | None = Field(None, min_length=1, description="members from nothing only")
    system_weights: SystemWeights | None = Field(None, description="in place of the section's")

    @model_validator(mode="after")
    def _network_from_nothing(self) -> "RetrainSection":
        if self.from_previous_model and (self.descriptor is not None or self.fitting_neuron is not None):
            raise ValueError("a member continued from the previous model keeps its network: a descriptor or "
                             "fitting_neuron needs from_previous_model: false")
        return self


@dataclass(frozen=True)
class MemberSchedule:
    """How the members of one ensemble train: from the previous ensemble's or from nothing."""

    from_previous_model: bool
    steps: int
    start_learning_rate: float
    loss: LossSection
    descriptor: DescriptorSection
    fitting_neuron: list[int]
    system_weights: SystemWeights


class TrainSection(Strict):
    executor: str = "gpu"
    ensemble_size: int = Field(4, ge=1)
    steps: int = Field(2000, ge=1)
    descriptor: DescriptorSection = Field(default_factory=DescriptorSection)
    fitting_neuron: list[int] = Field(default_factory=lambda: [60, 60, 60], min_length=1)
    loss: LossSection = Field(default_factory=LossSection)
    start_learning_rate: float = Field(1e-3, gt=0)
    stop_learning_rate: float = Field(3.5e-8, gt=0)
    decay_steps: int = Field(500, ge=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    compress: bool = False
    system_weights: SystemWeights = Field(default_factory=dict, description="labels drawn more often, by name "
                                          "pattern, e.g. {'bulk2-v*-000': 4}: the unrattled EOS cells")
    retrain: list[RetrainSection] = Field(default_factory=list, description="the schedules of the loop's later "
                                          "ensembles, by the first iteration of each; without one, each member "
                                          "continues from the previous ensemble's on the section's schedule")
    initial_models: list[Path] = Field(default_factory=list, description="frozen models (or a directory of them)")
    initial_data: list[Path] = Field(default_factory=list, description="DeePMD npy systems (or a directory of them)")
    test_data: list[Path] = Field(default_factory=list, description="held-out DeePMD systems (or a directory)")
    restore_from: list[Path] = Field(default_factory=list, description="`campaign export` directories whose members "
                                     "are taken where their train task is this campaign's, not trained again")

    @model_validator(mode="after")
    def _learning_rate_falls(self) -> "TrainSection":
        if self.stop_learning_rate > self.start_learning_rate:
            raise ValueError(f"stop_learning_rate ({self.stop_learning_rate}) is above start_learning_rate "
                             f"({self.start_learning_rate}): DeePMD's rate decays from start to stop")
        for k, entry in enumerate(self.retrain):
            if self.stop_learning_rate > entry.start_learning_rate:
                raise ValueError(f"stop_learning_rate ({self.stop_learning_rate}) is above retrain[{k}]."
                                 f"start_learning_rate ({entry.start_learning_rate}): DeePMD's rate decays from "
                                 f"start to stop")
            if k and entry.from_iteration <= self.retrain[k - 1].from_iteration:
                raise ValueError(f"retrain[{k}].from_iteration ({entry.from_iteration}) is not after "
                                 f"retrain[{k - 1}]'s ({self.retrain[k - 1].from_iteration}): list the schedules "
                                 f"in the order they start")
            if entry.descriptor is not None:
                try:
                    self.network(entry.from_iteration)
                except ValidationError as error:
                    item = error.errors()[0]
                    where = "".join(f".{part}" for part in item["loc"])
                    raise ValueError(f"retrain[{k}].descriptor{where}: {message_of(item)}") from None
        return self

    def network(self, iteration: int) -> tuple[DescriptorSection, list[int]]:
        """The descriptor and fitting net of `models/iter-<iteration>`: the section's, as changed by
        the `retrain` entries up to that iteration."""
        descriptor, fitting_neuron = self.descriptor, self.fitting_neuron
        for entry in self.retrain:
            if entry.from_iteration > iteration:
                break
            if entry.descriptor is not None:
                descriptor = DescriptorSection.model_validate({**descriptor.model_dump(),
                                                               **entry.descriptor.model_dump(exclude_none=True)})
            fitting_neuron = entry.fitting_neuron or fitting_neuron
        return descriptor, fitting_neuron

    def schedule(self, iteration: int) -> MemberSchedule:
        """How the members of `models/iter-<iteration>` train: the first ensemble from nothing on
        the section's schedule, a later one on the `retrain` entry that covers it."""
        network = self.network(iteration)
        if iteration == 0:
            return MemberSchedule(False, self.steps, self.start_learning_rate, self.loss, *network,
                                  self.system_weights)
        entry = next((e for e in reversed(self.retrain) if e.from_iteration <= iteration), None)
        if entry is None:
            return MemberSchedule(True, self.steps, self.start_learning_rate, self.loss, *network,
                                  self.system_weights)
        return MemberSchedule(entry.from_previous_model, entry.steps, entry.start_learning_rate,
                              entry.loss or self.loss, *network,
                              self.system_weights if entry.system_weights is None else entry.system_weights)


# ---------------------------------------------------------------- MD sections


class MdSection(Strict):
    """One MD protocol of `tasks.protocols` over a sweep: fixed `params` plus swept parameters."""

    protocol: str
    systems: list[str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, Any] = Field(default_factory=dict)
    replicas: int = Field(1, ge=1)
    executor: str = "gpu"

    @model_validator(mode="after")
    def _valid(self) -> "MdSection":
        _refuse(self._problems())
        return self

    def _problems(self) -> list[tuple[Location, str]]:
        """The protocol's parameters checked at every sweep point."""
        if self.protocol not in PROTOCOLS:
            return [(["protocol"], PROTOCOLS.unknown(self.protocol))]
        grammar = [(["sweep", *path], message) for path, message in sweep_problems(self.sweep)]
        if grammar:
            return grammar
        model = PROTOCOLS[self.protocol].Params
        swept = parameter_paths(self.sweep)
        problems: list[tuple[Location, str]] = []
        for params in self.distinct_params():
            for path, message in plugin_problems(model, params, f"'{self.protocol}'"):
                name = path[0] if path else None
                if name in swept and "takes no parameter" in message:
                    location = ["sweep", *swept[name]]
                elif name in swept:
                    values = self._sweep_values(swept[name])
                    location = ["sweep", *swept[name], *([values.index(params[name])] if len(path) == 1 else
                                                         path[1:])]
                else:
                    location = ["params", *path]
                if (location, message) not in problems:
                    problems.append((location, message))
        return problems

    def _sweep_values(self, path: Location) -> list[Any]:
        node: Any = self.sweep
        for key in path:
            node = node[key]
        return node

    def points(self) -> list[SweepPoint]:
        return expand_sweep(self.sweep, self.replicas)

    def run_params(self, point: SweepPoint) -> dict[str, Any]:
        """The parameters one run gets: `params` with the point's swept values over them."""
        return {**self.params, **point.parameters}

    def distinct_params(self) -> list[dict[str, Any]]:
        """The parameter sets of the sweep, each once (replicas share theirs)."""
        seen, result = set(), []
        for point in expand_sweep(self.sweep, 1):
            params = self.run_params(point)
            key = json.dumps(params, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                result.append(params)
        return result

    def typed_params(self, point: SweepPoint) -> Any:
        return PROTOCOLS[self.protocol].parse(self.run_params(point))

    def warnings(self) -> list[str]:
        found = [f"params.{name}: also swept; the sweep's values are used" for name in self.params
                 if name in parameter_paths(self.sweep)]
        for params in self.distinct_params():
            found += [w for w in PROTOCOLS[self.protocol].parse(params).warnings() if w not in found]
        return found


class TrustLevel(Strict):
    lo: float = Field(gt=0, description="eV/Å; below it a frame is accurate")
    hi: float = Field(gt=0, description="eV/Å; above it a frame is a failure, not a candidate")
    temperature_min: float = Field(0.0, ge=0, description="K")
    temperature_max: float = Field(float("inf"), gt=0, description="K")
    system: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "TrustLevel":
        if self.lo >= self.hi:
            raise ValueError(f"lo ({self.lo}) must be smaller than hi ({self.hi})")
        if self.temperature_min > self.temperature_max:
            raise ValueError(f"temperature_min ({self.temperature_min}) exceeds temperature_max "
                             f"({self.temperature_max})")
        return self


class PropertyTarget(Strict):
    """A stop of the loop on a property: the ensemble's members agree on it within `max_spread`."""

    property: str = Field(description="a property of tasks.properties")
    component: str = Field(description="one of its components, e.g. C44")
    max_spread: float = Field(gt=0, description="the members' standard deviation, in the component's unit")
    params: dict[str, Any] = Field(default_factory=dict, description="the property's parameters")
    executor: str = "cpu"

    @model_validator(mode="after")
    def _known(self) -> "PropertyTarget":
        if self.property not in PROPERTIES:
            _refuse([(["property"], PROPERTIES.unknown(self.property))])
        _refuse([(["params", *path], message) for path, message in
                  plugin_problems(PROPERTIES[self.property].Params, self.params, f"the property '{self.property}'")])
        return self


class SelectSection(Strict):
    trust_levels: list[TrustLevel] = Field(default_factory=lambda: [TrustLevel(lo=0.05, hi=0.3)], min_length=1)
    max_labels: int = Field(50, ge=1, description="per iteration")
    strategy: Literal["random", "highest_deviation", "farthest_point"] = "random"
    scope: Literal["run", "iteration"] = Field("run", description="pick each run's share of max_labels as it "
                                                                  "finishes (labels overlap exploration), or the "
                                                                  "iteration's from every run's candidates at once")
    accurate_ratio: float = Field(0.99, gt=0, le=1, description="converged when reached")
    max_iterations: int = Field(10, ge=1)
    cut_out_radius_angstrom: float | None = Field(None, gt=0, description="label a local region of large frames")
    min_distance_angstrom: float | None = Field(None, gt=0, description="candidates with two atoms closer than "
                                                                      "this are not labelled")
    property_targets: list[PropertyTarget] = Field(default_factory=list,
                                                   description="also converged when every target is met after a "
                                                               "retraining (each member computes the property)")


#: A plug-in named in a list: `name`, or `{name: {parameter: value}}` (fields, properties).
PluginEntry = str | dict[str, dict[str, Any]]


def entry_choices(entries: list[PluginEntry]) -> list[tuple[str, dict[str, Any]]]:
    return [(e, {}) if isinstance(e, str) else (next(iter(e)), dict(next(iter(e.values())) or {})) for e in entries]


def entry_problems(key: str, entries: list[PluginEntry], registry: Any) -> list[tuple[Location, str]]:
    """Each entry names a plug-in of `registry` once, with parameters its model accepts."""
    problems: list[tuple[Location, str]] = []
    names = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and len(entry) != 1:
            problems.append(([key, i], f"a {registry.kind} with parameters is one mapping "
                                       f"{{name: {{parameter: value}}}}"))
            continue
        name, params = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        if name not in registry:
            problems.append(([key, i], registry.unknown(name)))
            continue
        names.append(name)
        problems += [([key, i, name, *path], message) for path, message in
                     plugin_problems(registry[name].Params, params or {}, f"the {registry.kind} '{name}'")]
    return problems + [([key], f"'{n}' is named twice") for n in sorted({n for n in names if names.count(n) > 1})]


class ExploreSection(MdSection):
    """An exploration of the active-learning loop, from `from_iteration` on: a gap found after the
    first iterations explored. The iterations before keep their runs and selections (their
    labels are not picked again), as `label.added` keeps the ensembles before it."""

    from_iteration: int = Field(0, ge=0, description="the first iteration that explores it")


class ProductionStudy(MdSection):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="the store group of its fields")
    potential: str = Field("final_model", description="final_model (compressed where its training compressed "
                           "it), a classical potential of tasks.potentials, or a DeePMD model file (each run "
                           "compresses it, seconds)")
    fields: list[PluginEntry] = Field(default_factory=lambda: ["slab_temperature", "coordination", "msd",
                                                              "structure_fractions", "potential_energy"])

    def _problems(self) -> list[tuple[Location, str]]:
        """The protocol's parameters, and the fields and their parameters."""
        problems = super()._problems() + entry_problems("fields", self.fields, FIELDS)
        if self.potential_kind == "model_file" and not self.potential.endswith((".pth", ".pb")):
            known = ["final_model", *classical_names()]
            hint = did_you_mean(self.potential, known)
            problems.append((["potential"], f"'{self.potential}' is neither a potential{hint} ({', '.join(known)}) "
                                            f"nor a model file (.pth, .pb)"))
        if not problems and any(not p.get("frame_average_steps") for p in self.distinct_params()):
            problems += [(["fields", i], f"'{name}' with time_averaged needs the protocol's frame_average_steps "
                                         f"(params.frame_average_steps > 0): the run records the averages")
                         for i, (name, params) in enumerate(self.field_choices()) if params.get("time_averaged")]
        return problems

    def field_choices(self) -> list[tuple[str, dict[str, Any]]]:
        return entry_choices(self.fields)

    @property
    def potential_kind(self) -> str:
        """'final_model', a classical potential's name, or 'model_file'."""
        return self.potential if self.potential == "final_model" or self.potential in classical_names() \
            else "model_file"


class PropertiesSection(Strict):
    """The property stage: each property of `compute` for each potential, one task each."""

    compute: list[PluginEntry] = Field(min_length=1, description="properties of tasks.properties: a name, or "
                                                                 "{name: {parameter: value}}")
    potentials: list[str] = Field(["final_model"], min_length=1,
                                  description="final_model; ensemble (every member, and their spread); a classical "
                                              "potential; a model file (.pth, .pb); a labeller (the DFT reference, "
                                              "with the label section's settings for it)")
    executor: str = "cpu"
    reference: str | None = Field(None, description="the column relative errors are taken against: a potential "
                                                    "listed here or a published column; default: the labeller if "
                                                    "one is listed, else study 002's DFT")

    @model_validator(mode="after")
    def _valid(self) -> "PropertiesSection":
        problems = entry_problems("compute", self.compute, PROPERTIES)
        for i, potential in enumerate(self.potentials):
            if self.potential_kind(potential) == "unknown":
                known = ["final_model", "ensemble", *classical_names(), *LABELLERS]
                problems.append((["potentials", i], f"'{potential}' is neither a potential"
                                                    f"{did_you_mean(potential, known)} ({', '.join(known)}) nor a "
                                                    f"model file (.pth, .pb)"))
        problems += [(["potentials"], f"'{n}' is named twice")
                     for n in sorted({n for n in self.potentials if self.potentials.count(n) > 1})]
        columns = [*self.potentials, *PUBLISHED_COLUMNS]
        if self.reference is not None and self.reference not in columns:
            problems.append((["reference"], f"'{self.reference}' is not a column{did_you_mean(self.reference, columns)}"
                                            f"; the columns: {', '.join(columns)}"))
        _refuse(problems)
        return self

    @staticmethod
    def potential_kind(potential: str) -> str:
        """'final_model', 'ensemble', 'classical', 'dft', 'model_file' or 'unknown'."""
        if potential in ("final_model", "ensemble"):
            return potential
        if potential in classical_names():
            return "classical"
        if potential in LABELLERS:
            return "dft"
        return "model_file" if potential.endswith((".pth", ".pb")) else "unknown"

    def choices(self) -> list[tuple[str, dict[str, Any]]]:
        """Each property with its parameters as written (the plug-in fills in its defaults)."""
        return entry_choices(self.compute)

    @property
    def uses_models(self) -> bool:
        return any(self.potential_kind(p) in ("final_model", "ensemble") for p in self.potentials)


class AnalysisSection(Strict):
    """Settings shared by every field that has them; unset, each field's own default applies."""

    slab_width_angstrom: float | None = Field(None, gt=0, description="Å, every field with z-slabs")
    coordination_cutoff_angstrom: float | None = Field(None, gt=0, description="Å, the coordination field")
    rdf_max_angstrom: float | None = Field(None, gt=0, description="Å, the rdf field")
    diffusion_fit_window: tuple[float, float] | None = Field(None, description="fractions of the MSD lag range "
                                                                               "(the msd field)")
    dask_workers: int = Field(2, ge=1, description="threads of the local cluster, or jobs of a SLURM one")
    dashboard_port: int = Field(8787, ge=0, le=65535, description="0 picks a free port")
    dask_cluster: Literal["local", "slurm"] = "local"
    dask_slurm: dict[str, Any] = Field(default_factory=dict,
                                       description="keyword arguments of dask_jobqueue.SLURMCluster "
                                                   "(queue, account, cores, memory, walltime, ...)")

    @model_validator(mode="after")
    def _shared_settings_valid(self) -> "AnalysisSection":
        problems: list[tuple[Location, str]] = []
        for name in FIELDS:
            for parameter, value in self.field_overrides(name).items():
                key = next(k for k, (_, p, _v) in self._shared().items() if p == parameter)
                problems += [([key], message) for _, message in
                             plugin_problems(FIELDS[name].Params, {parameter: value})
                             if ([key], message) not in problems]
        _refuse(problems)
        return self

    def _shared(self) -> dict[str, tuple[str | None, str, Any]]:
        """analysis key -> (the one field it is for, or None for all; its parameter name; value)."""
        return {"slab_width_angstrom": (None, "slab_width_angstrom", self.slab_width_angstrom),
                "coordination_cutoff_angstrom": ("coordination", "cutoff_angstrom", self.coordination_cutoff_angstrom),
                "rdf_max_angstrom": ("rdf", "r_max_angstrom", self.rdf_max_angstrom),
                "diffusion_fit_window": ("msd", "fit_window", self.diffusion_fit_window)}

    def field_overrides(self, field: str) -> dict[str, Any]:
        """The shared settings that apply to one field, by its parameter names."""
        accepted = FIELDS[field].Params.model_fields
        return {parameter: value for only, parameter, value in self._shared().values()
                if value is not None and (only is None or only == field) and parameter in accepted}


class StorageSection(Strict):
    path: Path = Field(Path("fields.zarr"), description="the campaign store, relative to the workdir")
    flush_every_frames: int = Field(0, ge=0, description="frames between a running run's writes of its time "
                                                        "series (readable while it runs); 0: once, at its end")


SECTIONS_IN_ORDER = ("campaign", "executors", "systems", "label", "train", "explore", "select", "properties",
                     "production", "analysis", "storage")


class CampaignConfig(Strict):
    campaign: CampaignSection
    executors: dict[str, ExecutorSection] = Field(default_factory=_default_executors)
    systems: list[SystemSection] = Field(default_factory=list)
    label: LabelSection = Field(default_factory=LabelSection)
    train: TrainSection = Field(default_factory=TrainSection)
    explore: list[ExploreSection] = Field(default_factory=list)
    select: SelectSection = Field(default_factory=SelectSection)
    properties: PropertiesSection | None = None
    production: list[ProductionStudy] = Field(default_factory=list)
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)
    storage: StorageSection = Field(default_factory=StorageSection)

    @model_validator(mode="after")
    def _across_sections(self) -> "CampaignConfig":
        sections = {name: getattr(self, name) for name in SECTIONS_IN_ORDER}
        for name in ("systems", "explore", "production"):
            sections[name] = list(enumerate(sections[name]))
        _refuse(cross_problems(sections, [s.name for s in self.systems]))
        return self

    @property
    def workdir(self) -> Path:
        return self.campaign.workdir

    @property
    def store_path(self) -> Path:
        path = self.storage.path
        return path if path.is_absolute() else self.workdir / path

    def system(self, name: str) -> SystemSection:
        return next(s for s in self.systems if s.name == name)

    def field_choices(self, study: ProductionStudy) -> list[tuple[str, dict[str, Any]]]:
        """Each field of a study with its parameters: the field's defaults, the analysis
        section's shared settings, then the study's own, all filled in."""
        return [self.field_choice(name, params) for name, params in study.field_choices()]

    def field_choice(self, name: str, params: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """A field with its parameters filled in (`analysis` settings under `params`)."""
        return name, FIELDS[name].Params.model_validate({**self.analysis.field_overrides(name), **(params or {})}
                                                        ).model_dump(mode="json")

    def config_hash(self) -> str:
        """Hash of the validated config (defaults filled in), recorded as provenance."""
        return json_digest(self.model_dump(mode="json"))

    def warnings(self) -> list[str]:
        """Legal but suspicious values, by YAML path."""
        found = []
        if self.properties:
            md = [n for n, _ in self.properties.choices() if PROPERTIES[n].runs_md]
            dft = [p for p in self.properties.potentials if self.properties.potential_kind(p) == "dft"]
            if md and dft:
                found.append(f"properties: {', '.join(md)} {'runs' if len(md) == 1 else 'run'} MD, which "
                             f"{', '.join(dft)} {'does' if len(dft) == 1 else 'do'} not do here: recorded as not run "
                             f"for {'it' if len(dft) == 1 else 'them'}")
        for section, items in (("explore", self.explore), ("production", self.production)):
            for i, item in enumerate(items):
                found += [f"{section}[{i}]: {w}" for w in item.warnings() + self._image_gaps(item)]
        return found + self._unmatched_weights()

    def _unmatched_weights(self) -> list[str]:
        """`system_weights` patterns that name none of the campaign's labels: a typo weighs nothing."""
        names = [f"{s.name}-{k:03d}" for s in self.systems for k in range(s.rattle_copies + 1)]
        names += [pick_name(i, exploration_run_name(k, name, "000000"), 0) for i in range(self.select.max_iterations)
                  for k, item in enumerate(self.explore) for name in item.systems]  # sweep point and step aside
        names += [p.parent.name for root in self.train.initial_data for p in Path(root).rglob("type.raw")]
        weighted = [("train.system_weights", self.train.system_weights)]
        weighted += [(f"train.retrain[{k}].system_weights", entry.system_weights or {})
                     for k, entry in enumerate(self.train.retrain)]
        return [f"{where}: '{pattern}' matches no label of this campaign (labels are <system>-<copy>, copy 000 "
                f"the structure as built; picks iter<N>-e<k>-<system>-...)"
                for where, weights in weighted for pattern in weights
                if not any(fnmatchcase(n, pattern) for n in names)]

    def _image_gaps(self, item: "MdSection") -> list[str]:
        """Systems whose vacuum is too thin for MD: a surface would feel its opposite's periodic image."""
        protocol, found = PROTOCOLS[item.protocol], []
        for name in item.systems:
            atoms = self.system(name).atoms
            if any(protocol.box_height(protocol.parse(params), atoms) is not None for params in item.distinct_params()):
                continue  # the protocol sizes the box itself (deposition)
            for axis, gap in enumerate(widest_gaps(atoms)):
                if VACUUM_GAP_ANGSTROM < gap < IMAGE_GAP_ANGSTROM:
                    found.append(f"system '{name}' leaves {gap:.1f} Å of vacuum along {'xyz'[axis]}: its surfaces "
                                 f"interact through the periodic boundary with any cutoff near that (a slab's "
                                 f"vacuum_angstrom is the whole gap, half below and half above); "
                                 f"{IMAGE_GAP_ANGSTROM:g} Å or more keeps them apart")
        return found


# ---------------------------------------------------------------- checks across sections


def _has(sections: Mapping[str, Any], *names: str) -> bool:
    return all(sections.get(n) is not None for n in names)


def cross_problems(sections: Mapping[str, Any], system_names: list[str], written: frozenset[str] = frozenset(),
                   invalid: frozenset[str] = frozenset()) -> list[tuple[Location, str]]:
    """Problems that need several sections; a section that did not validate is None (its checks skipped).

    List sections come as (index in the YAML, entry) pairs of the entries that validated;
    `system_names` are the names of every system written, valid or not; `written` names the
    sections the YAML has, `invalid` those of them with a problem (what they would have asked
    for is unknown).
    """
    problems: list[tuple[Location, str]] = []
    systems: dict[str, SystemSection] = {s.name: s for _, s in sections.get("systems") or []}
    campaign: CampaignSection | None = sections.get("campaign")
    type_map = campaign.type_map if campaign else None
    executors = sections.get("executors")

    problems += [(["systems"], f"system name '{n}' is used twice")
                 for n in sorted({n for n in system_names if system_names.count(n) > 1})]
    built: dict[str, str] = {}
    for i, system in sections.get("systems") or []:
        if system._structure_digest in built:
            problems.append((["systems", i], f"'{system.name}' builds the same structure as "
                                             f"'{built[system._structure_digest]}' (at these parameters)"))
        else:
            built[system._structure_digest] = system.name
        if type_map is not None:
            unknown = sorted(set(system._atoms.get_chemical_symbols()) - set(type_map))
            if unknown:
                problems.append((["systems", i], f"'{system.name}' has elements {unknown} that campaign.type_map "
                                                 f"{type_map} lacks"))

    def check_executor(location: Location, name: str) -> None:
        if executors is not None and name not in executors:
            problems.append((location, f"no executor named '{name}'{did_you_mean(name, executors)}; "
                                       f"defined: {', '.join(executors)}"))

    def check_system(location: Location, name: str) -> None:
        if name not in system_names:
            problems.append((location, f"no system named '{name}' in 'systems'{did_you_mean(name, system_names)}"))

    label = sections.get("label")
    if label is not None:
        for j, name in enumerate(label.systems or []):
            check_system(["label", "systems", j], name)
        check_executor(["label", "executor"], label.executor)
        known = LABELLERS[label.engine].elements
        added_before: dict[str, int] = {}
        for k, entry in enumerate(label.added):
            for j, name in enumerate(entry.systems):
                location = ["label", "added", k, "systems", j]
                check_system(location, name)
                if name in (label.systems or []):
                    problems.append((location, f"'{name}' is in label.systems, the first ensemble's labels: "
                                               f"give it once"))
                elif name in added_before:
                    problems.append((location, f"'{name}' is added at iteration {added_before[name]} already"))
                added_before.setdefault(name, entry.iteration)
        upfront = label.systems if label.systems is not None else list(systems)
        labelled = [systems[n] for n in dict.fromkeys([*upfront, *added_before]) if n in systems]
        for system in labelled:
            extra = sorted(set(system._atoms.get_chemical_symbols()) - set(known or ()))
            if known is not None and extra:
                problems.append((["label", "engine"], f"the {label.engine} labeller knows only {list(known)}; "
                                                      f"system '{system.name}' has {extra}"))
    train = sections.get("train")
    if train is not None:
        descriptors = [(["train", "descriptor"], train.descriptor.sel, train.descriptor.three_body)]
        descriptors += [(["train", "retrain", k, "descriptor"], entry.descriptor.sel, entry.descriptor.three_body)
                        for k, entry in enumerate(train.retrain) if entry.descriptor]
        sels = [([*location, "sel"], sel) for location, sel, _ in descriptors if sel]
        sels += [([*location, "three_body", "sel"], three_body.sel) for location, _, three_body in descriptors
                 if three_body]
        problems += [(location, f"has {len(sel)} entries, one per element of type_map {type_map} is needed")
                     for location, sel in sels if type_map is not None and len(sel) != len(type_map)]
    explore = sections.get("explore") or []
    if train is not None and explore and train.ensemble_size < 2:
        problems.append((["train", "ensemble_size"], "exploration needs an ensemble of at least 2 models: "
                                                     "the model deviation is their disagreement"))
    select = sections.get("select")
    if label is not None and label.added and not explore:
        problems.append((["label", "added"], "added labels train the active-learning loop's later ensembles; "
                                             "this campaign has no explore section"))
    if explore and select is not None:
        # the iterations an entry names, each against the loop's last ensemble
        named = [(["label", "added", k, "iteration"], entry.iteration)
                 for k, entry in enumerate(label.added if label is not None else [])]
        named += [(["train", "retrain", k, "from_iteration"], entry.from_iteration)
                  for k, entry in enumerate(train.retrain if train is not None else [])]
        problems += [(location, f"the loop trains its ensembles 1 to select.max_iterations "
                                f"({select.max_iterations})") for location, iteration in named
                     if iteration > select.max_iterations]
        problems += [(["explore", i, "from_iteration"], f"the loop explores iterations 0 to "
                                                        f"{select.max_iterations - 1} (select.max_iterations "
                                                        f"{select.max_iterations})")
                     for i, section in explore if section.from_iteration >= select.max_iterations]
    if select is not None:
        for k, target in enumerate(select.property_targets):
            check_executor(["select", "property_targets", k, "executor"], target.executor)
        for k, level in enumerate(select.trust_levels):
            if level.system is not None:
                check_system(["select", "trust_levels", k, "system"], level.system)
            for j, other in enumerate(select.trust_levels[:k]):
                if other.system == level.system and level.temperature_min <= other.temperature_max \
                        and other.temperature_min <= level.temperature_max:
                    who = f"system '{level.system}'" if level.system else "every system"
                    problems.append((["select", "trust_levels", k], f"its temperature range overlaps "
                                                                    f"trust_levels[{j}] for {who} (the first would "
                                                                    f"win)"))
    production = sections.get("production") or []
    for section_name, items in (("explore", explore), ("production", production)):
        for i, item in items:
            for j, name in enumerate(item.systems):
                check_system([section_name, i, "systems", j], name)
            check_executor([section_name, i, "executor"], item.executor)
            problems += _protocol_problems([section_name, i], item, systems)
    if select is not None:
        for i, section in explore:
            for system in section.systems:
                for params in section.distinct_params():
                    temperature = float(PROTOCOLS[section.protocol].parse(params).temperature)
                    if not any(level.system in (None, system) and
                               level.temperature_min <= temperature <= level.temperature_max
                               for level in select.trust_levels):
                        problem = (["explore", i], f"no select.trust_levels entry covers system '{system}' "
                                                   f"at {temperature} K")
                        if problem not in problems:
                            problems.append(problem)
    studies = [p.name for _, p in production]
    problems += [(["production", i, "name"], "'properties' is the property stage's group of the store: name the "
                                             "study otherwise") for i, p in production if p.name == "properties"]
    properties: PropertiesSection | None = sections.get("properties")
    if properties is not None:
        check_executor(["properties", "executor"], properties.executor)
    problems += [(["production"], f"study name '{n}' is used twice")
                 for n in sorted({n for n in studies if studies.count(n) > 1})]
    for i, study in production:
        potential = POTENTIALS[study.potential] if study.potential_kind not in ("final_model", "model_file") else None
        if isinstance(potential, ClassicalPotential):
            for name in study.systems:
                if name in systems:
                    extra = sorted(set(systems[name]._atoms.get_chemical_symbols()) - set(potential.elements))
                    if extra:
                        problems.append((["production", i, "potential"], f"'{study.potential}' knows only "
                                                                         f"{list(potential.elements)}; system "
                                                                         f"'{name}' has {extra}"))
        analysis = sections.get("analysis")
        if analysis is not None:
            for k, (name, params) in enumerate(study.field_choices()):
                overrides = analysis.field_overrides(name)
                problems += [(["production", i, "fields", k, *path], message) for path, message in
                             plugin_problems(FIELDS[name].Params, {**overrides, **params}, f"the field '{name}'")
                             if not plugin_problems(FIELDS[name].Params, params)]
    uses_models = bool(explore) or any(s.potential == "final_model" for _, s in production) or \
        bool(properties and properties.uses_models) or not (production or properties)
    if invalid & {"explore", "production", "properties"}:
        # unknown while a section that could ask for models failed: a train section written is
        # still checked for its executor, "nothing to train on" waits for the fix
        check_train_executor, check_train_data = "train" in written, False
    else:
        check_train_executor = check_train_data = uses_models
    if train is not None and check_train_executor and (explore or not train.initial_models):
        check_executor(["train", "executor"], train.executor)  # an executor it trains on
    if train is not None and label is not None and not train.initial_models and not train.initial_data:
        to_label = label.systems if label.systems is not None else system_names
        if check_train_data and not to_label:
            problems.append((["train"], "the campaign needs trained models but has nothing to train on: give "
                                        "systems to label, train.initial_data or train.initial_models"))
    return problems


def _protocol_problems(location: Location, section: MdSection, systems: dict[str, SystemSection]
                       ) -> list[tuple[Location, str]]:
    """What the protocol cannot do with each system's structure at each parameter set."""
    problems: list[tuple[Location, str]] = []
    plugin = PROTOCOLS[section.protocol]
    for j, name in enumerate(section.systems):
        if name not in systems:
            continue
        atoms = systems[name]._atoms
        for params in section.distinct_params():
            for message in plugin.check(plugin.parse(params), atoms):
                problem = ([*location, "systems", j], f"'{name}': {message}")
                if problem not in problems:
                    problems.append(problem)
    return problems


# ---------------------------------------------------------------- loading and error lines


def format_path(location: list[str | int] | tuple[str | int, ...]) -> str:
    """('production', 0, 'sweep', 'temperature', 2) -> 'production[0].sweep.temperature[2]'."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def _error_lines(error: ValidationError, prefix: Location = ()) -> list[str]:
    lines: list[str] = []
    for item in error.errors():
        location = [*prefix, *(part for part in item["loc"] if not str(part).startswith("function-"))]
        context = item.get("ctx") or {}
        if "problems" in context:
            for sub_path, message in context["problems"]:
                lines.append(f"{format_path(location + list(sub_path))}: {message}")
            continue
        if item["type"] != "extra_forbidden" and real_location(CampaignConfig, location) != tuple(location):
            location = list(real_location(CampaignConfig, location))
            item = {**item, "type": "union"}
        if item["type"] == "extra_forbidden":
            known = names_at(CampaignConfig, location[:-1])
            message = f"unknown field{did_you_mean(location[-1], known)}" + (f"; known: {', '.join(known)}"
                                                                             if known else "")
        elif item["type"] == "missing":
            message = "required field is missing"
        else:
            message = message_of(item, field_at(CampaignConfig, location))
        lines.append(f"{format_path(location)}: {message}")
    return lines


def _validate_sections(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Each top-level section, and each entry of a list section, validated on its own."""
    sections: dict[str, Any] = {}
    lines: list[str] = []
    for name in SECTIONS_IN_ORDER:
        field = CampaignConfig.model_fields[name]
        if name not in data:
            if field.is_required():
                lines.append(f"{name}: required section is missing")
                sections[name] = None
            else:
                default = field.get_default(call_default_factory=True)
                sections[name] = list(enumerate(default)) if isinstance(default, list) else default
            continue
        value = data[name]
        if typing.get_origin(field.annotation) is list and isinstance(value, list):
            entry_type = typing.get_args(field.annotation)[0]
            sections[name] = []
            for i, entry in enumerate(value):
                try:
                    sections[name].append((i, TypeAdapter(entry_type).validate_python(entry)))
                except ValidationError as error:
                    lines += _error_lines(error, [name, i])
            continue
        try:
            sections[name] = TypeAdapter(field.annotation).validate_python(value)
        except ValidationError as error:
            lines += _error_lines(error, [name])
            sections[name] = None
    for name in data:
        if name not in CampaignConfig.model_fields:
            lines.append(f"{name}: unknown section{did_you_mean(name, SECTIONS_IN_ORDER)}; "
                         f"known: {', '.join(SECTIONS_IN_ORDER)}")
    return sections, lines


def _raw_list(data: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    value = data.get(name)
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def _raw_reference_problems(data: Mapping[str, Any], sections: Mapping[str, Any],
                            system_names: list[str]) -> list[tuple[Location, str]]:
    """The names that an MD entry which did not validate refers to: still checked, so that one
    `validate` reports them too."""
    problems: list[tuple[Location, str]] = []
    executors = sections.get("executors")
    for name in ("explore", "production"):
        valid = {i for i, _ in sections.get(name) or []}
        entries = data.get(name) if isinstance(data.get(name), list) else []
        for i, entry in enumerate(entries):
            if i in valid or not isinstance(entry, dict):
                continue
            for j, system in enumerate(entry.get("systems") or []):
                if isinstance(system, str) and system not in system_names:
                    problems.append(([name, i, "systems", j], f"no system named '{system}' in 'systems'"
                                                              f"{did_you_mean(system, system_names)}"))
            executor = entry.get("executor", "gpu")
            if executors is not None and isinstance(executor, str) and executor not in executors:
                problems.append(([name, i, "executor"], f"no executor named '{executor}'"
                                                        f"{did_you_mean(executor, executors)}; defined: "
                                                        f"{', '.join(executors)}"))
    return problems


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> CampaignConfig:
    """Validate a mapping; relative workdir and data paths are taken from `base_dir`."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): must be a mapping of sections"])
    sections, lines = _validate_sections(data)
    path_problems = _resolved(sections, base_dir)[0] if base_dir is not None else []
    if lines:
        names = [s.get("name") for s in _raw_list(data, "systems") if isinstance(s.get("name"), str)]
        invalid = frozenset(name for name in SECTIONS_IN_ORDER if name in data and (
            sections[name] is None or isinstance(data[name], list) and len(sections[name]) < len(data[name])))
        problems = cross_problems(sections, names, frozenset(data), invalid) + \
            _raw_reference_problems(data, sections, names)
        lines += [f"{format_path(path)}: {message}" for path, message in problems] + path_problems
        raise ConfigError(source, list(dict.fromkeys(lines)))
    try:
        config = CampaignConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(source, _error_lines(error) + path_problems) from None
    if path_problems:
        raise ConfigError(source, path_problems)
    if base_dir is not None:
        sections = {name: getattr(config, name) for name in ("campaign", "train", "label", "storage", "properties")}
        sections["production"] = list(enumerate(config.production))
        config = config.model_copy(update=_resolved(sections, base_dir)[1])
    return config


def _expand(paths: list[Path], is_member: Any) -> list[Path]:
    """A directory that is not itself a member stands for the members inside it (sorted)."""
    result = []
    for path in paths:
        if path.is_dir() and not is_member(path):
            result += sorted(p for p in path.iterdir() if is_member(p))
        else:
            result.append(path)
    return result


def _is_system(path: Path) -> bool:
    return (path / "type.raw").is_file()


def _is_model(path: Path) -> bool:
    return path.is_file() and path.suffix in (".pth", ".pb")


def _export_around(path: Path) -> Path | None:
    """The `campaign export` directory that `path` (its train/, test/ or a system in them) lies in."""
    for directory in (path, *path.parents[:2]):
        if (directory / EXPORT_MANIFEST).is_file():
            return directory
    return None


def _other_settings(where: str, export: Path, wanted: str) -> str | None:
    """Why the labels of the export `export` cannot join a campaign that labels at the settings
    hashed `wanted`, if they cannot: labels of two levels of theory are never mixed."""
    try:
        exported = read_export_manifest(export)
    except ValueError as error:
        return f"{where}: {error}"
    if exported.settings_hash != wanted:
        return (f"{where}: {export} holds labels of other settings ({exported.settings_hash}, this campaign's "
                f"are {wanted}): they are never mixed")
    return None


def _mixed_settings(train: "TrainSection", label_section: "LabelSection", resolve: Any) -> list[str]:
    """A campaign that trains on an export's labels and labels more itself labels at the export's
    settings (the export says its own)."""
    wanted = settings_hash(label_section.engine, label_section.settings())
    exports = [(f"train.{name}[{i}]", _export_around(resolve(path)))
               for name in ("initial_data", "test_data") for i, path in enumerate(getattr(train, name))]
    return [problem for where, export in exports if export is not None
            and (problem := _other_settings(where, export, wanted)) is not None]


def _other_network(train: "TrainSection", type_map: list[str], resolve: Any) -> list[str]:
    """Retraining starts each member from an initial model (`--init-frz-model`), which DeePMD
    refuses, after the exploration and the labels, unless the network is the same: an export
    records its members' networks."""
    from tasks.train import deepmd_input, network

    descriptor, fitting_neuron = train.network(1)
    wanted = network(deepmd_input([], [], type_map, 0, 1, descriptor.as_arguments(), fitting_neuron, {})["model"])
    problems = []
    for i, path in enumerate(train.initial_models):
        path = resolve(path)
        export = _export_around(path)
        if export is None:
            continue
        try:
            members = read_export_manifest(export).members.values()
        except ValueError as error:
            problems.append(f"train.initial_models[{i}]: {error}")
            continue
        for member in members:
            if member.network is None or path not in (member.model, member.model.parent):
                continue
            differences = [f"{section}.{key} {theirs!r} (train: {wanted[section].get(key)!r})"
                           for section in ("descriptor", "fitting_net") for key, theirs in member.network[section].items()
                           if wanted[section].get(key) != theirs]
            differences += [f"type_map {member.network['type_map']} (campaign: {wanted['type_map']})"] \
                if member.network["type_map"] != wanted["type_map"] else []
            if differences:
                problems.append(f"train.initial_models[{i}]: {member.model.name} of {export} has another network, "
                                f"and each member is retrained from its initial model: {'; '.join(differences)}")
                break  # one model's differences say it for the export
    return problems


def _resolved(sections: Mapping[str, Any], base_dir: Path) -> tuple[list[str], dict[str, Any]]:
    """Absolute paths (`~` expanded, relative ones from `base_dir`), directories expanded, all
    checked; for the sections given (those that validated). Returns (problems, new sections)."""
    def resolve(path: Path) -> Path:
        path = path.expanduser()
        return path if path.is_absolute() else (base_dir / path).resolve()

    problems: list[str] = []
    updates: dict[str, Any] = {}
    campaign = sections.get("campaign")
    if campaign is not None:
        workdir = resolve(campaign.workdir)
        if workdir.exists() and not workdir.is_dir():
            problems.append(f"campaign.workdir: {workdir} is a file, not a directory")
        updates["campaign"] = campaign.model_copy(update={"workdir": workdir})
    train = sections.get("train")
    if train is not None:
        expanded: dict[str, list[Path]] = {}
        for name, is_member, what in (("initial_models", _is_model, "model files (.pth, .pb)"),
                                      ("initial_data", _is_system, "DeePMD systems (type.raw)"),
                                      ("test_data", _is_system, "DeePMD systems (type.raw)")):
            expanded[name] = []
            for i, path in enumerate(getattr(train, name)):
                path = resolve(path)
                if not path.exists():
                    problems.append(f"train.{name}[{i}]: no such file or directory: {path}")
                    continue
                members = _expand([path], is_member)
                if path.is_dir() and not is_member(path) and not members:
                    problems.append(f"train.{name}[{i}]: {path} holds no {what}")
                expanded[name] += members
        expanded["restore_from"] = [resolve(path) for path in train.restore_from]
        for i, path in enumerate(expanded["restore_from"]):
            try:
                read_export_manifest(path)
            except ValueError as error:
                problems.append(f"train.restore_from[{i}]: {error}")
        updates["train"] = train.model_copy(update=expanded)
        if sections.get("explore") and train.schedule(1).from_previous_model and campaign is not None:
            problems += _other_network(train, campaign.type_map, resolve)
    label_section = sections.get("label")
    if train is not None and label_section is not None:
        problems += _mixed_settings(train, label_section, resolve)
    if label_section is not None and label_section.restore_from:
        wanted = settings_hash(label_section.engine, label_section.settings())
        restore_from = []
        for i, path in enumerate(label_section.restore_from):
            path = resolve(path)
            problem = _other_settings(f"label.restore_from[{i}]", path, wanted)
            problems += [problem] if problem else []
            restore_from.append(path)
        updates["label"] = label_section.model_copy(update={"restore_from": restore_from})
    production = []
    for i, study in sections.get("production") or []:
        if study.potential_kind == "model_file":
            path = resolve(Path(study.potential))
            if not path.is_file():
                problems.append(f"production[{i}].potential: no such model file: {path}")
            study = study.model_copy(update={"potential": str(path)})
        production.append(study)
    updates["production"] = production
    properties = sections.get("properties")
    if properties is not None:
        potentials = []
        for i, potential in enumerate(properties.potentials):
            if properties.potential_kind(potential) == "model_file":
                path = resolve(Path(potential))
                if not path.is_file():
                    problems.append(f"properties.potentials[{i}]: no such model file: {path}")
                potential = str(path)
            potentials.append(potential)
        updates["properties"] = properties.model_copy(update={"potentials": potentials})
    storage = sections.get("storage")
    if storage is not None:
        updates["storage"] = storage.model_copy(update={"path": storage.path.expanduser()})
    return problems, updates


def project_root_for(path: Path) -> Path:
    """Relative paths in a config are taken from the directory holding `configs/`.

    Configs live in `configs/` (or `configs/studies/`); writing `workdir: runs/x` there
    means `<project>/runs/x`, whichever directory the command is started from.
    """
    for parent in path.resolve().parents:
        if parent.name == "configs":
            return parent.parent
    return path.resolve().parent


def apply_scale(data: dict[str, Any], scale: str, source: str) -> dict[str, Any]:
    """Apply the overrides of `scales.<scale>` (dotted paths, list indices as numbers) to the raw config.

    A study config holds its full-scale values and, under `scales:`, smaller variants::

        scales:
          small:
            production.0.params.duration: 2.0
            systems.0.params.size: [6, 2]

    The parent of every path must exist in the config (a list index must exist too); a new
    key in an existing section is allowed and then checked by the schema like any other.
    """
    import copy

    scales = data.get("scales") or {}
    if scale not in scales:
        known = ", ".join(sorted(scales)) or "none"
        raise ConfigError(source, [f"scales: no scale named '{scale}'{did_you_mean(scale, scales)} "
                                   f"(this config defines: {known})"])
    result = copy.deepcopy(data)
    problems = []
    for dotted, value in (scales[scale] or {}).items():
        keys: list[str | int] = [int(k) if k.isdigit() else k for k in str(dotted).split(".")]
        node: Any = result
        try:
            for key in keys[:-1]:
                node = node[key]
            if isinstance(node, list):
                node[keys[-1]]  # an index must exist
            elif not isinstance(node, dict):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            problems.append(f"scales.{scale}.{dotted}: no such entry in the config")
            continue
        node[keys[-1]] = value
    if problems:
        raise ConfigError(source, problems)
    return result


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML keeps the last of two equal keys; a config that says `train:` twice is refused instead."""


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError("", [f"line {key_node.start_mark.line + 1}: key '{key}' appears twice in one mapping "
                                   f"(first on line {seen[key] + 1}); YAML would silently keep the last"])
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_yaml(path: Path) -> Any:
    """The YAML document of a config file, or ConfigError saying why it cannot be read."""
    source = str(path)
    if not path.exists():
        raise ConfigError(source, [f"no such file: {path}"])
    if not path.is_file():
        raise ConfigError(source, [f"{path} is not a file"])
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raise ConfigError(source, ["the file is gzip-compressed: decompress it (gunzip) and give the YAML file"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise ConfigError(source, [f"line {line}: not UTF-8 text (byte {error.start}); a campaign config is a "
                                   f"YAML text file"]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as error:
        raise ConfigError(source, error.problems) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [f"{where}not valid YAML ({getattr(error, 'problem', error)})"]) from None


def load_config(path: str | Path, scale: str | None = None) -> CampaignConfig:
    """Read and validate a YAML file (at a named scale); raises ConfigError with one line per problem."""
    path = Path(path)
    data = read_yaml(path)
    if isinstance(data, dict):
        if scale is not None:
            data = apply_scale(data, scale, str(path))
        data = {k: v for k, v in data.items() if k != "scales"}
    return parse_config(data, str(path), project_root_for(path))
