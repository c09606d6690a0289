"""The active-learning loop (DP-GEN semantics): explore, select, label, retrain, until converged.

One iteration k, with the ensemble of models/iter-k:

1. explore   every `explore[]` section x system x sweep point is one LAMMPS run with all
             models (`pair_style deepmd m1 m2 ... out_file model_devi.out`), frames saved;
2. select    as each run finishes, its frames are classified by the trust levels that
             match its temperature and system, and at most its share of `max_labels`
             candidates is picked by the strategy (cut out around the most uncertain atom
             for frames larger than CUT_OUT_MIN_ATOMS);
3. label     the picked structures start labelling at once, while other runs still explore
             (the engine's follow-ups), so stages overlap;
4. retrain   all labels so far, each member initialised from its previous model (or from
             nothing, on the schedule `train.retrain` gives that iteration).

The loop stops when the accurate ratio reaches `select.accurate_ratio`, when no explored
frame deviates by lo or more, when every `select.property_targets` entry is met by the
retrained ensemble (its members agree on the property within the tolerance), or after
`select.max_iterations`. Each iteration's record
(counts and ratios, labels added, test RMSE, wall time per stage) goes into the ledger and
`iterations/iter-<k>/record.json`.

Everything is content-addressed, and selection is a deterministic function of the files
the explorations wrote, so a rerun after a kill recomputes the same choices, finds the
finished runs and labels on disk, and continues where the campaign stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from campaign.config import CampaignConfig, TrustLevel, exploration_run_name, pick_name
from campaign.engine import Display, StageResult, TaskSpec, run_stage
from campaign.export import restore_labels
from campaign.ledger import Ledger, task_id
from campaign.properties import check_targets
from campaign.selection import (SELECTION_COUNTS, Selected, read_selection, restore_explorations, selection_dir,
                                selection_key, write_selection)
from campaign.stages import AddedData, base_structure, label_spec, ok_systems, train_stage
from storage.labels import read_export_manifest
from tasks import build, md, select, train
from tasks.atomic import write_json
from tasks.frame import Frame, frame_to_atoms
from tasks.potentials import Potential
from tasks.protocols import PROTOCOLS

#: Frames with more atoms than this are cut down to the region around their most uncertain
#: atom when `select.cut_out_radius_angstrom` is set.
CUT_OUT_MIN_ATOMS = 64


@dataclass
class IterationRecord:
    iteration: int
    exploration_runs: int = 0
    exploration_runs_failed: int = 0
    frames: int = 0
    accurate: int = 0
    candidate: int = 0
    failed: int = 0
    labels_selected: int = 0
    labels_added: int = 0
    labels_failed: int = 0
    max_deviation_ev_per_angstrom: float = 0.0
    force_rmse_ev_per_angstrom: float | None = None  # mean over the retrained members, on the test set
    energy_rmse_ev_per_atom: float | None = None
    explore_and_label_wall_time_s: float = 0.0
    train_wall_time_s: float = 0.0
    converged: str | None = None  # why the loop stopped after this iteration, if it did
    candidates_too_close: int = 0  # candidates not labelled: atoms closer than select.min_distance_angstrom
    property_spreads: dict[str, float] = field(default_factory=dict)  # select.property_targets, after retraining
    tasks_run: int = 0  # computed by this call, not earlier runs

    def _share(self, count: int) -> float:
        return count / self.frames if self.frames else 0.0

    @property
    def accurate_ratio(self) -> float:
        return self._share(self.accurate)

    def ratios(self) -> dict[str, float]:
        return {"accurate_ratio": self.accurate_ratio, "candidate_ratio": self._share(self.candidate),
                "failed_ratio": self._share(self.failed)}


def trust_level_for(levels: list[TrustLevel], temperature: float, system: str) -> TrustLevel:
    """The first level for this system (or any system) whose temperature range holds `temperature`."""
    for wanted in (system, None):
        for level in levels:
            if level.system == wanted and level.temperature_min <= temperature <= level.temperature_max:
                return level
    raise ValueError(f"no trust level covers system '{system}' at {temperature} K")


@dataclass
class _Run:
    name: str
    system: str
    temperature: float
    quota: int


@dataclass
class _Selection:
    """The follow-up of exploration runs: classify frames, pick candidates, return label tasks."""

    config: CampaignConfig
    iteration: int
    models: list[str]
    runs: dict[str, _Run]
    record: IterationRecord
    key: str  # `selection_key`
    label_tasks: list[str] = field(default_factory=list)
    #: scope 'iteration': every run's candidates as (run, frame, step, deviation), picked at the end
    pool: list[tuple[_Run, Any, int, float]] = field(default_factory=list)
    landed: set[str] = field(default_factory=set)  # exploration task ids whose frames were classified
    picked: list[tuple[str, str]] = field(default_factory=list)  # (label name, candidate file name)

    def __call__(self, spec: TaskSpec, outputs: dict[str, Any]) -> list[TaskSpec]:
        if spec.kind != "explore":
            return []
        specs = self._classify_and_pick(spec, outputs)
        self.landed.add(spec.task_id)
        if self.config.select.scope == "run":
            self.save()  # after the last run: the picks are final, while their labels still run
        return specs

    def save(self) -> None:
        """The iteration's selection, once every exploration run has landed (one that failed
        leaves none: a rerun explores again)."""
        if self.landed == set(self.runs):
            write_selection(self.config, self.iteration, Selected(
                self.key, self.picked,
                {name: getattr(self.record, name) for name in SELECTION_COUNTS}))

    def _classify_and_pick(self, spec: TaskSpec, outputs: dict[str, Any]) -> list[TaskSpec]:
        run = self.runs[spec.task_id]
        output_dir = spec.output_dir
        self.record.exploration_runs_failed += outputs["status"] != "ok"
        deviation_file = output_dir / "model_devi.out"
        deviations = select.read_model_deviation(deviation_file) if deviation_file.exists() else {}
        frame_files = {int(p.stem.split("-")[1]): p for p in (output_dir / "trajectory").glob("frame-*.npz")}
        steps = sorted(s for s in frame_files if s in deviations)
        values = np.array([deviations[s] for s in steps])
        if not len(values):
            return []
        level = trust_level_for(self.config.select.trust_levels, run.temperature, run.system)
        labels = select.classify(values, level.lo, level.hi)
        self.record.frames += len(values)
        self.record.accurate += int(np.sum(labels == select.ACCURATE))
        self.record.candidate += int(np.sum(labels == select.CANDIDATE))
        self.record.failed += int(np.sum(labels == select.FAILED))
        self.record.max_deviation_ev_per_angstrom = max(self.record.max_deviation_ev_per_angstrom,
                                                        float(np.nanmax(values)))
        candidates = [i for i, label in enumerate(labels) if label == select.CANDIDATE]
        if not candidates or (run.quota == 0 and self.config.select.scope == "run"):
            return []
        frames = [_frame_atoms(frame_files[steps[i]], self.config.campaign.type_map) for i in candidates]
        limit = self.config.select.min_distance_angstrom
        if limit:
            kept = [k for k, atoms in enumerate(frames) if not select.too_close(atoms, limit)]
            self.record.candidates_too_close += len(frames) - len(kept)
            candidates, frames = [candidates[k] for k in kept], [frames[k] for k in kept]
            if not candidates:
                return []
        if self.config.select.scope == "iteration":  # picked together once every run has landed
            self.pool += [(run, frames[k], steps[i], float(values[i])) for k, i in enumerate(candidates)]
            return []
        seed = self.config.campaign.seed * 7919 + self.iteration * 101 + sum(map(ord, run.name))
        chosen = self._pick(frames, values[candidates], run.quota, seed)
        return self._label_specs([(run, frames[k], steps[candidates[k]], float(values[candidates[k]]))
                                  for k in chosen])

    def pick_pool(self) -> list[TaskSpec]:
        """`select.scope: iteration`: the iteration's `max_labels` from the candidates of every run."""
        if not self.pool:
            specs = []
        else:
            seed = self.config.campaign.seed * 7919 + self.iteration * 101
            chosen = self._pick([entry[1] for entry in self.pool], np.array([entry[3] for entry in self.pool]),
                                self.config.select.max_labels, seed)
            specs = self._label_specs([self.pool[k] for k in chosen])
        self.save()
        return specs

    def _pick(self, frames: list[Any], deviations: np.ndarray, n: int, seed: int) -> list[int]:
        strategy = self.config.select.strategy
        descriptors = (select.frame_descriptors(self.models[0], frames, self.config.campaign.type_map)
                       if strategy == "farthest_point" else None)
        return select.pick(deviations, n, strategy, seed, descriptors)

    def _label_specs(self, picked: list[tuple[_Run, Any, int, float]]) -> list[TaskSpec]:
        """A label task for each picked frame (cut out around its most uncertain atom if large)."""
        specs = []
        for run, atoms, step, deviation in picked:
            radius = self.config.select.cut_out_radius_angstrom
            if radius and len(atoms) > CUT_OUT_MIN_ATOMS:
                atom_deviation = select.per_atom_force_deviation(self.models, atoms, self.config.campaign.type_map)
                atoms = select.local_region(atoms, atom_deviation, radius)
            atoms.info.update({"exploration_run": run.name, "step": step, "iteration": self.iteration,
                               "max_deviation_ev_per_angstrom": deviation})
            path = selection_dir(self.config.workdir, self.iteration) / "candidates" / f"{run.name}-step{step}.extxyz"
            # always written: a file of this name from an earlier ensemble's run holds another frame (the
            # same frame writes the same bytes, so a rerun keeps its label task's id)
            build.write_structure(atoms, path)
            self.picked.append((pick_name(self.iteration, run.name, step), path.name))
            specs.append(label_spec(self.config, self.picked[-1][0], path, stage=f"label-{self.iteration}"))
        return self.label(specs)

    def label(self, specs: list[TaskSpec]) -> list[TaskSpec]:
        """The picked frames' label tasks, those an export holds restored (a resumed campaign on
        another machine)."""
        self.label_tasks += [spec.task_id for spec in specs]
        self.record.labels_selected += len(specs)
        restore_labels(self.config, specs)
        return specs


def _frame_atoms(path: Path, type_map: list[str]):
    with np.load(path) as data:
        values = {k: data[k] for k in data.files}
    values["step"], values["time_ps"] = int(values["step"]), float(values["time_ps"])
    atoms = frame_to_atoms(Frame(**values), type_map)
    atoms.wrap()
    del atoms.arrays["lammps_id"]
    return atoms


def verify_exploration(output_dir: Path) -> dict[str, Any] | None:
    try:
        result = md.read_result(output_dir)
    except (FileNotFoundError, ValueError, TypeError):
        return None
    if result.status == "ok" and not (output_dir / "model_devi.out").exists():
        return None
    outputs = asdict(result)
    outputs.pop("inserted_ids"), outputs.pop("inserted_time_ps")
    return outputs


def exploration_specs(config: CampaignConfig, iteration: int,
                      models: list[str]) -> tuple[list[TaskSpec], dict[str, _Run]]:
    """One LAMMPS run per explore section (from its `from_iteration` on) x system x sweep point,
    with the whole ensemble: the compressed models where training made them (`train.md_models`).
    A run's id hashes the frozen `models` and whether each ran compressed, not the compressed
    files, whose bytes `dp compress` makes anew each time: the same run on another machine,
    with the members restored from an export and compressed there, keeps its id."""
    specs: list[TaskSpec] = []
    runs: dict[str, _Run] = {}
    md_models = train.md_models(models)
    compressed = [md_model != str(model) for md_model, model in zip(md_models, models)]
    potential = Potential("deepmd", md_models)
    for section_index, section in enumerate(config.explore):
        if iteration < section.from_iteration:
            continue
        for system in section.systems:
            structure = base_structure(config, system)
            for point in section.points():
                seed = (config.campaign.seed * 1000 + iteration * 10 + point.replica + 1) % 900_000_000
                typed = PROTOCOLS[section.protocol].parse({**section.run_params(point), "seed": seed})
                name = exploration_run_name(section_index, system, point.point_id)
                arguments = {"protocol": section.protocol, "params": typed.model_dump(mode="json", exclude_none=True),
                             "type_map": config.campaign.type_map,
                             "masses": {e: config.campaign.mass_of(e) for e in config.campaign.type_map}}
                identifier = task_id("explore", {**arguments, "compressed": compressed}, [structure, *models])
                output_dir = selection_dir(config.workdir, iteration) / "explore" / \
                    f"{name}-{identifier[:8]}"
                specs.append(TaskSpec(identifier, "explore", name, section.executor, md.run_md,
                                      dict(structure=str(structure), potential=potential, protocol=section.protocol,
                                           params=arguments["params"], output_dir=str(output_dir),
                                           type_map=config.campaign.type_map, masses_amu=arguments["masses"],
                                           save_trajectory=True),
                                      output_dir, verify_exploration, {**arguments, "models": md_models,
                                                                       "structure": str(structure)}))
                runs[identifier] = _Run(name, system, float(typed.temperature), 0)
    max_labels = config.select.max_labels
    for k, run in enumerate(runs.values()):  # shares of max_labels, the first ones one larger
        run.quota = max_labels // len(runs) + (k < max_labels % len(runs))
    return specs, runs


def save_record(config: CampaignConfig, ledger: Ledger, record: IterationRecord) -> None:
    payload = {**asdict(record), **record.ratios()}
    ledger.save_iteration(record.iteration, payload)
    write_json(selection_dir(config.workdir, record.iteration) / "record.json", payload)


def _mean_metric(models: StageResult, key: str) -> float | None:
    values = [o.get("metrics", {}).get(key) for o in models.outputs.values()]
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


def run_loop(config: CampaignConfig, ledger: Ledger, models: list[str], training: list[str], testing: list[str],
             added: AddedData, display: Display) -> tuple[list[str], list[IterationRecord], StageResult | None]:
    """Iterate until converged; returns the final models, one record per iteration, the last training.
    The labels `added` at an iteration join its ensemble's training and test data, after the picks.

    A record's `tasks_run` counts the tasks computed by this call (0 on a rerun that found
    everything done); the ledger keeps the record of the run that did the work.
    """
    records: list[IterationRecord] = []
    section = config.select
    trained: StageResult | None = None
    last_trained = 0
    # the records of the run that did each iteration's work: this workdir's, else an export's
    own = {r["iteration"]: r for r in ledger.iterations()}
    previous = {**{r["iteration"]: r for export in config.label.restore_from
                   for r in read_export_manifest(export).iterations}, **own}
    for iteration in range(section.max_iterations):
        record = IterationRecord(iteration)
        started = time.perf_counter()
        specs, runs = exploration_specs(config, iteration, models)
        record.exploration_runs = len(specs)
        selection = _Selection(config, iteration, models, runs, record, selection_key(config, specs, models))
        selected = read_selection(config, iteration, selection.key)
        if selected is not None:  # the runs have landed before (here, or on the machine of an export)
            for name, value in selected.counts.items():
                setattr(record, name, value)
            candidates = selection_dir(config.workdir, iteration) / "candidates"
            result = run_stage(f"label-{iteration}", selection.label(
                [label_spec(config, name, candidates / file, stage=f"label-{iteration}")
                 for name, file in selected.labels]), ledger, config.campaign.max_retries,
                config.campaign.failure_ratio_limit, display)
            labels = result.outputs
            ledger.log_event(f"explore-{iteration}", f"its {len(runs)} runs' selection found "
                             f"({len(selected.labels)} frames picked): not explored again")
        else:
            restore_explorations(config, iteration, specs)  # the runs an export holds, finished elsewhere
            result = run_stage(f"explore-{iteration}", specs, ledger, config.campaign.max_retries,
                               config.campaign.failure_ratio_limit, display, follow_up=selection,
                               follow_up_stages={f"label-{iteration}"})
            labels = result.outputs_of("label")
        if selected is None and config.select.scope == "iteration":  # the whole iteration's candidates in one pick
            labelled = run_stage(f"label-{iteration}", selection.pick_pool(), ledger, config.campaign.max_retries,
                                 config.campaign.failure_ratio_limit, display)
            labels, result.ran = labelled.outputs, result.ran + labelled.ran
        new_systems = ok_systems(labels)
        record.labels_added = len(new_systems)
        record.labels_failed = len(selection.label_tasks) - record.labels_added
        record.explore_and_label_wall_time_s = time.perf_counter() - started
        _index_labels(config, labels, iteration)
        record.tasks_run = result.ran
        # New systems go after the old ones: DeePMD's batches follow this order, so an order that
        # depends on where the workdir lies (sorting absolute paths) changed the trained model.
        training = [*training, *(s for s in new_systems if s not in training)]
        if record.frames and record.accurate_ratio >= section.accurate_ratio:
            record.converged = f"accurate ratio {record.accurate_ratio:.3f} >= {section.accurate_ratio}"
        elif record.frames and record.accurate == record.frames:
            record.converged = "every explored frame below the lower trust level"
        if record.converged is None and new_systems:
            joining = added.training.get(iteration + 1, []), added.testing.get(iteration + 1, [])
            if any(joining):
                training, testing = [*training, *joining[0]], [*testing, *joining[1]]
                ledger.log_event(f"train-{iteration + 1}", f"{len(joining[0])} added labels join the training data "
                                                           f"and {len(joining[1])} the test data")
            started = time.perf_counter()
            trained = train_stage(config, ledger, training, testing, iteration + 1, models, display)
            last_trained = iteration + 1
            models = sorted(o["model_path"] for o in trained.outputs.values())
            record.train_wall_time_s = time.perf_counter() - started
            record.force_rmse_ev_per_angstrom = _mean_metric(trained, "force_ev_per_angstrom_rmse")
            record.energy_rmse_ev_per_atom = _mean_metric(trained, "energy_per_atom_ev_rmse")
            record.tasks_run += trained.ran
            if section.property_targets:
                checks = check_targets(config, ledger, train.md_models(models), iteration + 1, display)
                record.property_spreads = {str(c.component): c.spread for c in checks}
                if all(c.met for c in checks):
                    record.converged = "property targets met: " + "; ".join(map(str, checks))
        elif record.converged is None:
            record.converged = "no candidate could be labelled"
        if record.converged is None and iteration + 1 == section.max_iterations:
            record.converged = f"reached max_iterations ({section.max_iterations}) without converging"
        if record.tasks_run or iteration not in previous:
            save_record(config, ledger, record)
        else:  # nothing was redone: keep the wall times of the run that did the work
            for name in ("explore_and_label_wall_time_s", "train_wall_time_s"):
                setattr(record, name, previous[iteration].get(name, 0.0))
            # a replay of an export's iteration, or stop rules changed since: recorded, with that run's count
            if iteration not in own or previous[iteration].get("converged") != record.converged:
                save_record(config, ledger, replace(record, tasks_run=previous[iteration].get("tasks_run", 0)))
        records.append(record)
        ledger.log_event(f"iteration-{iteration}", f"accurate {record.accurate_ratio:.3f}, "
                         f"candidates {record.candidate}, labels added {record.labels_added}"
                         + (f"; stop: {record.converged}" if record.converged else ""))
        if record.converged:
            break
    unused = sorted(i for i in {*added.training, *added.testing} if i > last_trained)
    if unused:
        ledger.log_event("campaign", f"the loop stopped at ensemble {last_trained}: the labels added at iteration "
                                     f"{', '.join(map(str, unused))} trained no model")
    return models, records, trained


def _index_labels(config: CampaignConfig, labels: dict[str, dict[str, Any]], iteration: int) -> None:
    from storage.labels import LabelIndex

    with LabelIndex(config.workdir / "labels.sqlite") as index:
        for identifier, outputs in labels.items():
            index.add(identifier, f"iteration:{iteration}", config.label.engine, outputs["records"])
