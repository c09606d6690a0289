"""The engine on the real Parsl HTEX: resume, lost workers, deterministic failures, kill -9."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import parsl
import pytest
import yaml

import engine_helpers
from campaign.config import ExecutorSection, parse_config
from campaign.engine import Display, StageFailed, TaskSpec, run_stage
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
        first = run_stage("s", specs(tmp_path, engine_helpers.write_marker, 4), ledger)
        assert first.ran == 4 and sorted(o["value"] for o in first.outputs.values()) == [0, 1, 2, 3]
        second = run_stage("s", specs(tmp_path, engine_helpers.write_marker, 4), ledger)
        assert second.ran == 0 and second.skipped == 4


def follow_ups(tmp_path):
    """A follow-up that gives each task of a stage one more, in the ledger stage `follow`."""
    def follow_up(spec, outputs):
        if spec.stage == "follow":
            return []
        return [TaskSpec(f"f{spec.task_id}", "test", f"f{spec.name}", "cpu", engine_helpers.write_marker,
                         {"output_dir": str(tmp_path / f"f{spec.name}"), "value": 0}, tmp_path / f"f{spec.name}",
                         engine_helpers.verify_marker, stage="follow")]

    return follow_up


def test_progress_lines_name_every_stage_and_count_what_was_done_before(tmp_path, parsl_cpu):
    """What a batch log shows: a line per ledger stage (follow-ups included) at the start and end."""
    follow_up = follow_ups(tmp_path)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        run_stage("s", specs(tmp_path, engine_helpers.write_marker, 2), ledger, follow_up=follow_up)  # done before
        lines: list[str] = []
        run_stage("s", specs(tmp_path, engine_helpers.write_marker, 3), ledger, display=Display(report=lines.append),
                  follow_up=follow_up)
    assert lines[0].startswith("s: 2/3 done (2 already), 0 failed, 1 running") and "ETA" in lines[0]
    assert lines[1].startswith("follow: 2/2 done (2 already)")
    final = {line.split(":")[0]: line for line in lines[-2:]}
    assert final["s"].startswith("s: 3/3 done (2 already), 0 failed, 0 running, 0 to retry")
    assert final["follow"].startswith("follow: 3/3 done (2 already), 0 failed, 0 running")
    assert all("ETA" not in line for line in final.values())


def test_a_stage_forgets_the_pending_tasks_its_config_no_longer_makes(tmp_path, parsl_cpu):
    """Tasks an earlier config registered (a killed driver's, set back to pending) that this
    one does not make would count as work to do in `campaign status` forever: the stage
    removes its own at its start (its follow-ups add to another), and its follow-ups' stages'
    at its end."""
    follow_up = follow_ups(tmp_path)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.register_many([("old", "test", "s", "old", {}), ("fold", "test", "follow", "fold", {}),
                              ("other", "test", "elsewhere", "other", {})])
        run_stage("s", specs(tmp_path, engine_helpers.write_marker, 2), ledger, follow_up=follow_up,
                  follow_up_stages={"follow"})
        assert {row.task_id: row.state for row in ledger.tasks()} == {
            "task0": "done", "task1": "done", "ftask0": "done", "ftask1": "done", "other": "pending"}
        removed = [message for _, stage, message in ledger.events() if "removed from the ledger" in message]
        assert removed == ["1 pending tasks of s that this config no longer makes (an earlier config's or models') "
                           "removed from the ledger",
                           "1 pending tasks of follow, s that this config no longer makes (an earlier config's or "
                           "models') removed from the ledger"]


def test_one_driver_per_workdir(tmp_path):
    """A second `campaign run` of a workdir that a driver holds is refused before it does
    anything, naming the driver (two would submit the same tasks into the same directories)."""
    from campaign.driver import driver_lock

    config_path = tmp_path / "busy.yaml"
    config_path.write_text(yaml.safe_dump(reference_campaign(tmp_path / "run", 1)))
    (tmp_path / "run").mkdir()
    with driver_lock(tmp_path / "run"):
        refused = subprocess.run([sys.executable, "-m", "campaign.cli", "run", str(config_path)], cwd=ROOT,
                                 capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1
    assert f"is being run by `campaign run`, pid {os.getpid()}" in refused.stderr, refused.stderr
    assert not (tmp_path / "run" / "ledger.sqlite").exists()


def test_a_task_s_time_is_its_own_run_not_its_wait_for_a_worker(tmp_path, monkeypatch):
    """Three tasks on one worker run one after another: each task's recorded run (on its
    worker's clock) begins after the one before it ended, though all three were submitted at
    once; its wall time is at least its own work and excludes the others'."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    parsl.load(make_parsl_config({"cpu": ExecutorSection(max_workers=1)}, tmp_path / "parsl"))
    try:
        with Ledger(tmp_path / "ledger.sqlite") as ledger:
            run_stage("s", specs(tmp_path, engine_helpers.write_marker_after, 3)[1:], ledger)
            rows = sorted(ledger.tasks(stage="s"), key=lambda row: row.started_at)
    finally:
        parsl.dfk().cleanup()
        parsl.clear()
    for before, after in zip(rows, rows[1:]):
        assert after.started_at >= before.ended_at
    for row in rows:
        work = json.loads((tmp_path / row.name / "result.json").read_text())["value"] / 10
        assert work <= row.wall_time_s == pytest.approx(row.ended_at - row.started_at, abs=1e-5)  # epoch floats
        assert row.host == os.uname().nodename
    assert sum(row.wall_time_s for row in rows) <= rows[-1].ended_at - rows[0].started_at


def test_lost_worker_is_retried(tmp_path, parsl_cpu):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        result = run_stage("s", specs(tmp_path, engine_helpers.die_once_then_succeed, 2), ledger, backoff_s=0.5)
        assert result.ran == 2 and not result.failed
        assert all(row.attempts == 2 for row in ledger.tasks(stage="s"))
        assert any("retrying" in message for _, _, message in ledger.events())


def test_a_task_lost_every_time_is_reported_not_looped(tmp_path, parsl_cpu):
    """A task killed with its worker at every attempt (longer than any block's walltime) ends
    as failed after its retries, saying why, and the rest of the stage goes on."""
    mixed = specs(tmp_path, engine_helpers.write_marker, 3)
    mixed[0].function = engine_helpers.always_die
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        result = run_stage("s", mixed, ledger, max_retries=1, failure_ratio_limit=0.5, backoff_s=0.2)
        assert result.ran == 2 and list(result.failed) == ["task0"]
        assert "lost 2 times" in result.failed["task0"] and "raise the executor's walltime" in result.failed["task0"]
        row = ledger.get("task0")
        assert row.state == "failed" and row.attempts == 2 and "walltime" in row.error


def test_deterministic_failure_recorded_not_retried(tmp_path, parsl_cpu):
    mixed = specs(tmp_path, engine_helpers.write_marker, 4)
    mixed[1].function = engine_helpers.always_raise
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        result = run_stage("s", mixed, ledger, failure_ratio_limit=0.5)
        assert result.ran == 3 and list(result.failed) == ["task1"]
        row = ledger.get("task1")
        assert row.state == "failed" and row.attempts == 1 and "atoms too close" in row.error
        with pytest.raises(StageFailed, match="1 of 4 test tasks failed"):
            run_stage("s", mixed, ledger, failure_ratio_limit=0.05)
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
    engine_helpers.run_then_kill(command, ROOT, lambda: len(label_files(tmp_path / "run")) >= 6,
                                 tmp_path / "run")
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


def ended(process) -> bool:
    import psutil

    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_rerun_stops_the_worker_pools_a_killed_driver_left(tmp_path):
    """kill -9 of the driver alone (a lost login session): its local worker pool runs in a
    session of its own and outlives it. The next `campaign run` stops it before it submits
    anything (two workers would write one task's directory), then finishes the campaign. Parsl's
    interchange, in a process group of its own too, dies with the driver (`campaign.interchange`)."""
    import psutil

    config_path = tmp_path / "orphans.yaml"
    config_path.write_text(yaml.safe_dump(reference_campaign(tmp_path / "run", KILL_TEST_LABELS - 1)))
    command = [sys.executable, "-m", "campaign.cli", "run", str(config_path)]
    driver = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    engine_helpers.wait_for(lambda: len(label_files(tmp_path / "run")) >= 6, 300, 0.02)
    interchanges = [p for p in psutil.Process(driver.pid).children() if "interchange" in " ".join(p.cmdline())]
    in_groups_of_their_own = [os.getpgid(p.pid) == p.pid for p in interchanges]
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert interchanges and all(in_groups_of_their_own)
    engine_helpers.wait_for(lambda: all(map(ended, interchanges)), 60)
    marker = str(tmp_path / "run" / "parsl") + os.sep
    orphans = [p for p in psutil.process_iter(["cmdline"]) if any(marker in a for a in p.info["cmdline"] or [])]
    assert orphans, "the worker pool outlives its driver"
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert not [p for p in orphans if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    with Ledger(tmp_path / "run" / "ledger.sqlite") as ledger:
        assert any("of a killed driver's local blocks stopped" in message for _, _, message in ledger.events(50))
        assert {row.state for row in ledger.tasks(stage="label")} == {"done"}


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


def test_each_worker_is_bound_to_its_own_accelerator(tmp_path, monkeypatch):
    """`available_accelerators: [gpu-a, gpu-b]` with two workers: each worker sees exactly one of them."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    section = ExecutorSection(max_workers=2, available_accelerators=["gpu-a", "gpu-b"])
    parsl.load(make_parsl_config({"gpu": section}, tmp_path / "parsl"))
    try:
        app = parsl.python_app(engine_helpers.visible_devices, executors=["gpu"])
        seen = [future.result() for future in [app(0.3) for _ in range(8)]]
    finally:
        parsl.dfk().cleanup()
        parsl.clear()
    by_worker = {}
    for entry in seen:
        pid, devices = entry.split(":")
        by_worker.setdefault(pid, set()).add(devices)
    assert len(by_worker) == 2 and all(len(devices) == 1 for devices in by_worker.values())
    assert {d for devices in by_worker.values() for d in devices} == {"gpu-a", "gpu-b"}
