"""The property stage: each property of `properties.compute` for each potential of
`properties.potentials`, one Parsl task each, under the ledger (a rerun redoes nothing finished).

A potential's equation of state, when listed, runs first and hands its lattice constant to
that potential's other properties (unless their parameters give one): a0 is found once per
potential, and every property is computed at the same a0. A potential without a bcc minimum
fails its EOS with the reason, and its other properties are recorded as not run. A failed
property is a finding, not a reason to stop: the stage never aborts on failures.

Workers write one `result.json` per task; the driver then writes the store's `properties`
group from them (`storage.properties`) and the comparison table is made from that group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from campaign.config import CampaignConfig
from campaign.engine import Display, StageResult, TaskSpec, run_stage
from campaign.ledger import Ledger, task_id
from storage.properties import MEMBER_PREFIX, PropertyOutcome, write_properties
from tasks.properties import PROPERTIES, RESULT_FILE, PropertyPotential, property_task, read_result, result_summary

#: The property whose result the others start from.
EQUILIBRIUM = "eos"


def property_potentials(config: CampaignConfig, models: list[str]) -> list[PropertyPotential]:
    """The columns: `final_model` is the ensemble's first member, `ensemble` every member."""
    section = config.properties
    columns = []
    for name in section.potentials:
        kind = section.potential_kind(name)
        if kind in ("final_model", "ensemble") and not models:
            raise ValueError(f"properties.potentials names '{name}', but the campaign has no trained models")
        if kind == "final_model":
            columns.append(PropertyPotential("final_model", "deepmd", models[0]))
        elif kind == "ensemble":
            columns += [PropertyPotential(f"{MEMBER_PREFIX}{k}", "deepmd", m) for k, m in enumerate(models)]
        elif kind == "classical":
            columns.append(PropertyPotential(name, "classical", name))
        elif kind == "dft":
            columns.append(PropertyPotential(name, "dft", name, config.label.settings(name)))
        else:
            columns.append(PropertyPotential(column_label(config, name), "deepmd", name))
    return columns


def column_label(config: CampaignConfig, potential: str) -> str:
    """A potential's column in the table: a model file by its file name, or by as many of its
    last path parts as tell it from the other model files listed (four members' `model.pth`
    would otherwise be one column and one task); the others by their own name."""
    section = config.properties
    if section.potential_kind(potential) != "model_file":
        return potential
    files = [Path(p).parts for p in section.potentials if section.potential_kind(p) == "model_file"]
    parts = Path(potential).parts
    for count in range(1, len(parts) + 1):
        if sum(f[-count:] == parts[-count:] for f in files) == 1:
            return str(Path(*parts[-count:]))
    return potential


def reference_column(config: CampaignConfig) -> str | None:
    """What relative errors are against: as configured, else the first labeller listed, else
    None (the table then uses study 002's DFT column)."""
    section = config.properties
    if section.reference is not None:
        return column_label(config, section.reference)
    return next((p for p in section.potentials if section.potential_kind(p) == "dft"), None)


def verify_property(output_dir: Path) -> dict[str, Any] | None:
    try:
        return result_summary(output_dir / RESULT_FILE)
    except (FileNotFoundError, ValueError, KeyError):
        return None


def property_spec(config: CampaignConfig, name: str, params: dict[str, Any], potential: PropertyPotential,
                  executor: str) -> TaskSpec:
    """One (property, potential); its id hashes the validated parameters and the potential's
    contents (a model by its digest, a DFT code by its settings), never a path."""
    params = PROPERTIES[name].Params.model_validate(params).model_dump(mode="json")
    hashed = {"property": name, "params": params, "kind": potential.kind,
              "source": None if potential.kind == "deepmd" else potential.source, "settings": potential.settings}
    identifier = task_id("property", hashed, [potential.source] if potential.kind == "deepmd" else [])
    output_dir = config.workdir / "properties" / potential.label / f"{name}-{identifier[:8]}"
    return TaskSpec(identifier, "property", f"{name}:{potential.label}", executor, property_task,
                    dict(name=name, params=params, potential=potential, output_dir=str(output_dir)),
                    output_dir, verify_property, {**hashed, "potential": potential.label})


@dataclass
class FromEquilibrium:
    """Follow-up of a finished EOS: the same potential's other properties at its lattice constant."""

    config: CampaignConfig
    others: list[tuple[str, dict[str, Any]]]
    by_task: dict[str, PropertyPotential]  # EOS task id -> its potential
    started: dict[str, list[TaskSpec]] = field(default_factory=dict)  # potential label -> its other specs

    def __call__(self, spec: TaskSpec, outputs: dict[str, Any]) -> list[TaskSpec]:
        potential = self.by_task.get(spec.task_id)
        if potential is None:
            return []
        a0 = outputs["values"]["lattice_constant"]
        specs = [property_spec(self.config, name, {"lattice_constant_angstrom": a0, **params}, potential,
                               self.config.properties.executor)
                 for name, params in self.others if runs(name, potential)]
        self.started[potential.label] = specs
        return specs


def properties_stage(config: CampaignConfig, ledger: Ledger, models: list[str], display: Display
                     ) -> tuple[StageResult, xr.Dataset]:
    """Run the stage; write and return the store's `properties` group."""
    section = config.properties
    potentials = property_potentials(config, models)
    choices = section.choices()
    first = [(n, p) for n, p in choices if n == EQUILIBRIUM]
    others = [(n, p) for n, p in choices if n != EQUILIBRIUM]
    if first:
        specs = {p.label: [property_spec(config, *first[0], p, section.executor)] for p in potentials}
        follow = FromEquilibrium(config, others, {s[0].task_id: p for p, s in zip(potentials, specs.values())})
    else:
        specs = {p.label: [property_spec(config, n, params, p, section.executor) for n, params in choices
                           if runs(n, p)]
                 for p in potentials}
        follow = None
    result = run_stage("properties", [s for group in specs.values() for s in group], ledger,
                       config.campaign.max_retries, failure_ratio_limit=1.0, display=display, follow_up=follow)
    outcomes = []
    for potential in potentials:
        ran = specs[potential.label] + (follow.started.get(potential.label, []) if follow else [])
        for name, _ in choices:
            spec = next((s for s in ran if s.kwargs["name"] == name), None)
            outcomes.append(_outcome(potential, name, spec, result))
    dataset = write_properties(config.store_path, outcomes, reference_column(config))
    failed = sum(not o.status == "ok" for o in outcomes)
    ledger.log_event("properties", f"{len(outcomes) - failed} of {len(outcomes)} properties computed; "
                                   f"written to {config.store_path}/properties")
    return result, dataset


def runs(name: str, potential: PropertyPotential) -> bool:
    """Whether the property can be computed with the potential: MD needs one LAMMPS runs."""
    return not (PROPERTIES[name].runs_md and potential.kind == "dft")


def _outcome(potential: PropertyPotential, name: str, spec: TaskSpec | None, result: StageResult
             ) -> PropertyOutcome:
    if spec is None:
        why = f"the {EQUILIBRIUM} of {potential.label} failed" if runs(name, potential) else \
            f"{name} runs MD, which the DFT code {potential.source} does not do here"
        return PropertyOutcome(potential.label, name, None, f"not run: {why}")
    if spec.task_id in result.outputs:
        return PropertyOutcome(potential.label, name, read_result(spec.output_dir / RESULT_FILE), "ok")
    reason = result.failed.get(spec.task_id, "unknown").strip().splitlines()
    return PropertyOutcome(potential.label, name, None, f"failed: {reason[-1] if reason else 'unknown'}")


@dataclass(frozen=True)
class TargetCheck:
    """One property target after a retraining: the members' spread against the tolerance."""

    property: str
    component: str
    spread: float  # NaN when a member could not compute it
    max_spread: float
    unit: str

    @property
    def met(self) -> bool:
        return bool(self.spread <= self.max_spread)

    def __str__(self) -> str:
        return f"{self.component} spread {self.spread:.3g} {'<=' if self.met else '>'} {self.max_spread:g} {self.unit}"


def check_targets(config: CampaignConfig, ledger: Ledger, models: list[str], iteration: int, display: Display
                  ) -> list[TargetCheck]:
    """Each `select.property_targets` entry computed by every member of the ensemble (one task
    each, under the ledger); the spread is the members' standard deviation."""
    targets = config.select.property_targets
    members = [PropertyPotential(f"{MEMBER_PREFIX}{k}", "deepmd", m) for k, m in enumerate(models)]
    specs = {}  # one task per member and property (several targets may read one property)
    for k, target in enumerate(targets):
        for member in members:
            specs[(k, member.label)] = property_spec(config, target.property, target.params, member, target.executor)
    unique = list({spec.task_id: spec for spec in specs.values()}.values())
    result = run_stage(f"targets-{iteration}", unique, ledger, config.campaign.max_retries,
                       failure_ratio_limit=1.0, display=display)
    checks = []
    for k, target in enumerate(targets):
        values, unit = [], ""
        for member in members:
            spec = specs[(k, member.label)]
            if spec.task_id not in result.outputs:
                values.append(float("nan"))
                continue
            try:
                value = read_result(spec.output_dir / RESULT_FILE).value(target.component)
            except KeyError:
                raise ValueError(f"select.property_targets: {target.property} has no component "
                                 f"'{target.component}'") from None
            values.append(value.value)
            unit = value.unit
        checks.append(TargetCheck(target.property, target.component, float(np.std(values)), target.max_spread, unit))
    return checks
