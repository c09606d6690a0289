"""DeePMD-kit training through `dp --pt` (a member's commands in one process), test metrics and
ensemble model deviation."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tasks import build, train


def test_members_are_frozen_and_tested(tiny_ensemble):
    for member in tiny_ensemble:
        assert Path(member.model_path).is_file()
        assert member.metrics["force_ev_per_angstrom_rmse"] > 0
        assert member.metrics["energy_per_atom_ev_rmse"] >= 0
        assert member.metrics["n_test_frames"] == 6
        assert member.n_training_frames == 48
        record = json.loads((Path(member.model_path).parent / "record.json").read_text())
        assert record["seed"] == member.seed


def test_input_json_follows_config(tiny_ensemble):
    config = json.loads((Path(tiny_ensemble[0].model_path).parent / "input.json").read_text())
    assert config["model"]["descriptor"]["type"] == "se_e2_a"
    assert config["model"]["descriptor"]["rcut"] == 6.0
    assert config["loss"]["start_pref_f"] == 1000.0 and config["loss"]["limit_pref_e"] == 1.0
    assert config["training"]["numb_steps"] == 400


def test_a_three_body_term_makes_a_hybrid_whose_network_is_the_same_for_every_seed():
    """What `--init-frz-model` and an export's members are compared by: the network without its
    seeds, also inside a hybrid descriptor's parts."""
    from campaign.config import DescriptorSection

    hybrid = DescriptorSection(three_body={}).as_arguments()
    first, second = (train.deepmd_input([], [], ["Li"], seed, 10, hybrid, [8], {})["model"] for seed in (1, 2))
    assert [part["type"] for part in first["descriptor"]["list"]] == ["se_e2_a", "se_e3"]
    assert {part["seed"] for part in second["descriptor"]["list"]} == {2}
    assert first["descriptor"]["list"][1] == {"type": "se_e3", "rcut": 4.0, "rcut_smth": 3.5, "sel": [24],
                                              "neuron": [2, 4, 8], "resnet_dt": False, "seed": 1}
    assert train.network(first) == train.network(second)
    plain = train.deepmd_input([], [], ["Li"], 1, 10, DescriptorSection().as_arguments(), [8], {})["model"]
    assert plain["descriptor"]["type"] == "se_e2_a" and train.network(plain) != train.network(first)


def test_model_deviation(tiny_ensemble):
    frames = [build.rattled(build.bcc_bulk(3.45, 2), 0.15, 200 + i) for i in range(4)]
    models = [m.model_path for m in tiny_ensemble]
    deviation = train.model_deviation(models, frames, ["Li"])
    assert deviation.shape == (4, 3)
    assert np.all(deviation[:, 0] > 0)
    assert np.all(deviation[:, 0] >= deviation[:, 2]) and np.all(deviation[:, 2] >= deviation[:, 1])
    same = train.model_deviation([models[0], models[0]], frames, ["Li"])
    assert np.allclose(same, 0.0)


def test_force_deviation_formula():
    forces = np.zeros((2, 1, 2, 3))
    forces[0, 0, 0] = [1.0, 0, 0]
    forces[1, 0, 0] = [-1.0, 0, 0]
    maximum, minimum, mean = train.force_deviation(forces)[0]
    assert maximum == 1.0 and minimum == 0.0 and mean == 0.5


def test_init_from_previous_model(tmp_path, tiny_ensemble, reference_dataset):
    from conftest import tiny_train_arguments

    arguments = {**tiny_train_arguments(), "steps": 20}
    record = train.train_member(tmp_path / "next", reference_dataset["train"], reference_dataset["test"], seed=3,
                                init_model=tiny_ensemble[0].model_path, compress=True, **arguments)
    assert record.init_model == tiny_ensemble[0].model_path
    frames = [build.rattled(build.bcc_bulk(3.45, 2), 0.1, 300 + i) for i in range(3)]
    plain, compressed = train.ensemble_forces([record.model_path, record.compressed_path], frames, ["Li"])
    np.testing.assert_allclose(compressed, plain, atol=2e-3)  # tabulated embedding: same forces, eV/Å
    # Starting from a trained model, 20 steps keep its accuracy rather than starting over.
    assert record.metrics["force_ev_per_angstrom_rmse"] < 3 * tiny_ensemble[0].metrics["force_ev_per_angstrom_rmse"]


def test_dp_commands_of_a_batch_run_in_order_and_the_failed_one_is_named(tmp_path, tiny_ensemble,
                                                                         reference_dataset):
    """A member's `dp` commands share one process; the first that fails stops the batch, and the
    error names it with its log, not the batch."""
    model = tiny_ensemble[0].model_path
    commands = [train.test_command(model, reference_dataset["test"], tmp_path / "test"),
                train.compress_command(tmp_path / "missing.pth", tmp_path / "compressed.pth"),
                train.compress_command(model, tmp_path / "never.pth")]
    with pytest.raises(train.TrainingError, match=r"compress -i \S*missing\.pth"):
        train.run_dp(*commands)
    assert train.test_metrics(reference_dataset["test"], tmp_path / "test") == tiny_ensemble[0].metrics
    assert commands[1].log.is_file() and not commands[2].log.exists()


def test_a_batch_runs_in_directories_given_relative_to_the_caller(tmp_path, monkeypatch, project_root):
    monkeypatch.chdir(tmp_path)
    Path("member").mkdir()
    shutil.copy(project_root / "data/li-gpaw/models/member-0.pth", "member/model.pth")
    train.run_dp(train.DpCommand(["compress", "-i", "model.pth", "-o", "compressed.pth"], Path("member"),
                                 "compress.log"))
    assert Path("member/compressed.pth").is_file() and Path("member/compress.log").is_file()


@pytest.mark.slow
def test_a_member_killed_mid_training_resumes_from_its_last_checkpoint(tmp_path, reference_dataset):
    """A block that reaches its walltime kills the training; the next attempt goes on from the newest
    checkpoint (every 5 % of the steps) instead of starting the member over."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import tiny_train_arguments

    arguments = {**tiny_train_arguments(), "steps": 600, "work_dir": str(tmp_path / "member"),
                 "training_systems": reference_dataset["train"], "validation_systems": reference_dataset["test"],
                 "seed": 5}
    script = f"import json; from tasks import train; train.train_member(**json.loads({json.dumps(arguments)!r}))"
    attempt = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline:
        checkpoint = train.latest_checkpoint(tmp_path / "member") if (tmp_path / "member").exists() else None
        if checkpoint is not None and train.checkpoint_step(checkpoint) >= 90:
            break
        time.sleep(0.2)
    os.killpg(attempt.pid, signal.SIGKILL)  # the attempt and its `dp`, as a walltime would
    attempt.wait()
    assert not (tmp_path / "member" / "record.json").exists()
    record = train.train_member(**arguments)
    assert 90 <= record.resumed_from_step < 600
    assert (tmp_path / "member" / "train-restart.log").exists() and Path(record.model_path).is_file()
    steps = np.loadtxt(tmp_path / "member" / "lcurve.out", usecols=0, ndmin=1)
    assert steps[-1] == 600 and record.metrics["force_ev_per_angstrom_rmse"] < 1.0


def test_max_neighbours_counts_the_bcc_shells(tmp_path):
    """Perfect bcc Li at 3.43 Å: 8, 6, 12, 24 and 8 neighbours at 2.97, 3.43, 4.85, 5.69 and
    5.94 Å, the sixth shell (6) at 6.86."""
    from tasks import label

    bulk = label.label_structures([build.bcc_bulk(3.43, 1)], "reference", {"potential": "snap"}, tmp_path / "bulk")
    assert [train.max_neighbours(bulk.system_dirs, r) for r in (3.0, 5.0, 6.0, 6.9)] == [8, 26, 58, 64]


def test_system_weights_make_deepmd_draw_the_named_labels_more_often(tmp_path):
    """`system_weights` by label name (the batch's records.json, or an export's directory name):
    DeePMD's own data summary shows the probabilities asked for, the rest drawn by size."""
    from conftest import tiny_train_arguments

    from tasks import label

    settings = {"potential": "snap"}
    eos = label.label_structures([build.bcc_bulk(3.45)], "reference", settings, tmp_path / "a",
                                 names=["bulk2-v100-000"])
    rattled = label.label_structures([build.rattled(build.bcc_bulk(3.45, 2), 0.1, k) for k in (1, 2)], "reference",
                                     settings, tmp_path / "b", names=["bulk16-001", "bulk16-002"])
    export = tmp_path / "export" / "slab100-000"  # an export's label: its name is its directory's
    shutil.copytree(rattled.system_dirs[0], export)
    systems = [*eos.system_dirs, *rattled.system_dirs, str(export)]
    assert [label.label_names(s) for s in systems] == [["bulk2-v100-000"], ["bulk16-001", "bulk16-002"],
                                                        ["slab100-000"]]
    weights = {"bulk2-v*-000": 6.0, "slab*": 0.5}
    assert train.sampling_probabilities(systems, weights) == pytest.approx([6 / 9, 2 / 9, 1 / 9])
    arguments = {**tiny_train_arguments(), "steps": 10}
    train.train_member(tmp_path / "member", systems, [], seed=1, system_weights=weights, **arguments)
    log = (tmp_path / "member" / "train.log").read_text().splitlines()
    start = next(k for k, line in enumerate(log) if "Summary of DataSystem: Training" in line)
    assert log[start + 2].split()[-2:] == ["prob", "pbc"]
    probabilities = [float(line.split()[-2]) for line in log[start + 3:start + 6]]
    assert probabilities == pytest.approx([6 / 9, 2 / 9, 1 / 9], abs=1e-3)
