"""The engine on the real Parsl HTEX: resume, lost workers, deterministic failures, kill -9."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import parsl
import pytest
import yaml

import engine_helpers
from campaign.config import ExecutorSection, parse_config
from campaign.engine import StageFailed, TaskSpec, run_stage
from campaign.executors import make_parsl_config
from campaign.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def parsl_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    parsl.load(make_parsl_config({"cpu": ExecutorSection(max_workers=2)}, tmp_path / "parsl"))
    yield
    parsl.dfk().cleanup()
    parsl.clear()


def specs(tmp_path, function, n):
    return [TaskSpec(f"task{i}", "test", f"t{i}", "cpu", function, {"output_dir": str(tmp_path / f"t{i}"), "value": i},
                     tmp_path / f"t{i}", engine_helpers.verify_marker) for i in range(n)]


def test_stage_runs_then_resumes(tmp_path, parsl_cpu):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        first = run_stage("s", specs(tmp_path, engine_helpers.write_marker, 4), ledger, show_progress=False)
        assert first.ran == 4 and sorted(o["value"] for o in first.outputs.values()) == [0, 1, 2, 3]
        second = run_stage("s", specs(tmp_path, engine_helpers.write_marker, 4), ledger, show_progress=False)
        assert second.ran == 0 and second.skipped == 4


def test_lost_worker_is_retried(tmp_path, parsl_cpu):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        result = run_stage("s", specs(tmp_path, engine_helpers.die_once_then_succeed, 2), ledger,
                           show_progress=False, backoff_s=0.5)
        assert result.ran == 2 and not result.failed
        assert all(row.attempts == 2 for row in ledger.tasks(stage="s"))
        assert any("retrying" in message for _, _, message in ledger.events())


def test_deterministic_failure_recorded_not_retried(tmp_path, parsl_cpu):
    mixed = specs(tmp_path, engine_helpers.write_marker, 4)
    mixed[1].function = engine_helpers.always_raise
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        result = run_stage("s", mixed, ledger, show_progress=False, failure_ratio_limit=0.5)
        assert result.ran == 3 and list(result.failed) == ["task1"]
        row = ledger.get("task1")
        assert row.state == "failed" and row.attempts == 1 and "atoms too close" in row.error
        with pytest.raises(StageFailed, match="1 of 4 test tasks failed"):
            run_stage("s", mixed, ledger, show_progress=False, failure_ratio_limit=0.05)
        assert ledger.get("task1").attempts == 1  # a recorded deterministic failure is not rerun


def reference_campaign(workdir: Path, n_copies: int) -> dict:
    return {
        "campaign": {"name": "kill-test", "workdir": str(workdir), "seed": 3},
        "executors": {"cpu": {"max_workers": 2}, "gpu": {"max_workers": 1}},
        "systems": [{"name": "bulk", "builder": "bulk", "params": {"lattice_constant": 3.45, "size": 2},
                     "rattle_copies": n_copies, "rattle_stdev_angstrom": 0.1}],
        "label": {"engine": "reference", "reference": {"potential": "snap"}},
        "train": {"ensemble_size": 1, "steps": 20, "decay_steps": 10, "fitting_neuron": [8],
                  "descriptor": {"neuron": [4, 8], "axis_neuron": 2}},
    }


def label_files(workdir: Path) -> dict[str, tuple[float, str]]:
    return {str(p): (p.stat().st_mtime_ns, p.read_text()) for p in (workdir / "labels").glob("*/records.json")}


def label_energies(workdir: Path) -> dict[str, float]:
    energies = {}
    for path in (workdir / "labels").glob("*/records.json"):
        for record in json.loads(path.read_text()):
            energies[record["name"]] = record["energy_ev"]
    return energies


KILL_TEST_LABELS = 300  # a reference label takes about 10 ms: 300 keep labelling busy for seconds, not 0.3 s


def test_kill_driver_during_labelling_then_resume(tmp_path):
    config_path = tmp_path / "kill.yaml"
    config_path.write_text(yaml.safe_dump(reference_campaign(tmp_path / "run", KILL_TEST_LABELS - 1)))
    command = [sys.executable, "-m", "campaign.cli", "run", str(config_path)]
    driver = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(label_files(tmp_path / "run")) < 6:
        time.sleep(0.02)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its Parsl workers, at once
    driver.wait()
    finished_before = label_files(tmp_path / "run")
    assert 6 <= len(finished_before) < KILL_TEST_LABELS, "the kill must land in the middle of labelling"

    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = label_files(tmp_path / "run")
    assert len(after) == KILL_TEST_LABELS
    for path, stamp in finished_before.items():
        assert after[path] == stamp, f"{path} was labelled again"
    with Ledger(tmp_path / "run" / "ledger.sqlite") as ledger:
        rows = ledger.tasks(stage="label")
        assert len(rows) == KILL_TEST_LABELS and all(row.state == "done" for row in rows)

    clean = tmp_path / "clean.yaml"
    clean.write_text(yaml.safe_dump(reference_campaign(tmp_path / "clean", KILL_TEST_LABELS - 1)))
    subprocess.run([sys.executable, "-m", "campaign.cli", "run", str(clean)], cwd=ROOT, check=True,
                   capture_output=True, timeout=600)
    assert label_energies(tmp_path / "run") == label_energies(tmp_path / "clean")


def test_run_twice_says_nothing_to_do(tmp_path):
    config = parse_config(reference_campaign(tmp_path / "twice", 3))
    from campaign.run import run_campaign

    first = run_campaign(config)
    assert first["labels"].ran == 4 and first["models"].ran == 1
    second = run_campaign(config)
    assert second["labels"].ran == 0 and second["models"].ran == 0
    from storage import open_campaign

    table = open_campaign(tmp_path / "twice").labels()
    assert len(table) == 4 and set(table.status) == {"ok"} and set(table.source) == {"system:bulk"}
    assert table.max_force_ev_per_angstrom.max() > 0 and table.engine.unique().tolist() == ["reference"]
