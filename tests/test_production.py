"""Production at the level of a campaign: kill -9 of workers and of the driver mid-study, a notebook
reading the store meanwhile, a sweep grown by a temperature, all on the real Parsl HTEX, LAMMPS
(MEAM, the classical stand-in) and the Zarr store."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml

import engine_helpers
from campaign.config import load_config
from campaign.ledger import Ledger
from campaign.stages import base_structure
from storage import fields as store
from storage import open_campaign

ROOT = Path(__file__).resolve().parents[1]
TEMPERATURES = [250, 350, 450]


def production_campaign(workdir: Path, temperatures=TEMPERATURES, replicas: int = 6) -> dict:
    return {
        "campaign": {"name": "production-test", "workdir": str(workdir), "seed": 11},
        "executors": {"cpu": {"max_workers": 1}, "gpu": {"max_workers": 2}},
        "systems": [{"name": "bulk", "builder": "bulk", "params": {"lattice_constant": 3.51, "size": 3}}],
        "production": [{"name": "nvt", "protocol": "nvt", "systems": ["bulk"], "potential": "meam",
                        "params": {"steps": 3000, "trajectory_stride": 100},
                        "sweep": {"temperature": temperatures}, "replicas": replicas,
                        "fields": ["slab_temperature", "structure_fractions", "msd", "rdf", "potential_energy"]}],
        "analysis": {"slab_width_angstrom": 3.0, "dashboard_port": 0},
        "storage": {"flush_every_frames": 5},
    }


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def stored_runs(workdir: Path) -> int:
    status = workdir / "fields.zarr" / "nvt" / "run_status"
    return sum(1 for p in status.glob("c.*") if np.frombuffer(p.read_bytes(), np.int8)[0] == store.RUN_COMPLETE)


def run(config: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "campaign.cli", "run", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, **kwargs)


def values(workdir: Path) -> dict[str, np.ndarray]:
    """Every stored value of the study but the provenance (host, wall time and task ids differ)."""
    data = open_campaign(workdir).fields("nvt", complete_only=False).sortby("temperature").load()
    return {name: data[name].values for name in data.data_vars}


def session_of(driver: subprocess.Popen) -> list:
    """Every process of the driver's session: the driver, Parsl's interchange, and the worker pools,
    which Parsl starts in process groups of their own, detached from the driver."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if os.getsid(process.pid) == driver.pid:
                found.append(process)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def kill_workers_mid_run(driver: subprocess.Popen, workdir: Path) -> int:
    """kill -9 the Parsl workers that are running MD: those with a run's `log.lammps` open, which
    LAMMPS holds from a run's start to its end; returns how many. Each worker is stopped while
    it is looked at, so a run cannot end between the look and the kill. An idle worker is left
    alone: one killed while waiting for a task can die holding the read lock of its pool's
    task queue, and the pool then never runs another task (a limit of Parsl's worker pool,
    README "Never losing work"), so that kill is not one this campaign can come back from."""
    import psutil

    pools = [p for p in session_of(driver) if any("process_worker_pool" in part for part in p.info["cmdline"] or [])]
    workdir, killed = workdir.resolve(), 0
    for child in (c for pool in pools for c in pool.children()):
        try:
            child.suspend()
            running = any(Path(f.path).name == "log.lammps" and Path(f.path).is_relative_to(workdir)
                          for f in child.open_files())
            if running:
                child.kill()
                killed += 1
            else:
                child.resume()
        except psutil.NoSuchProcess:
            continue
    return killed


def kill_session(driver: subprocess.Popen) -> None:
    for process in session_of(driver):
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    driver.wait()


def wait_for(condition, seconds: float = 900) -> None:
    """A guard against a hang, not a timing: alone the chaos run takes about a minute, but beside
    the quickstart's fixture on 2 cores four MEAM runs after a kill took more than 300 s."""
    engine_helpers.wait_for(condition, seconds)


@pytest.mark.slow
def test_kill_workers_and_driver_mid_study_then_resume_equals_an_uninterrupted_run(tmp_path):
    clean = tmp_path / "clean"
    assert run(write_config(tmp_path / "clean.yaml", production_campaign(clean))).returncode == 0
    expected = values(clean)
    assert int((expected["run_status"] == store.RUN_COMPLETE).sum()) == 18

    workdir = tmp_path / "chaos"
    config = write_config(tmp_path / "chaos.yaml", production_campaign(workdir))
    driver = subprocess.Popen([sys.executable, "-m", "campaign.cli", "run", str(config)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: stored_runs(workdir) >= 2)
    killed = 0

    def killed_one() -> bool:  # wait_for asks once more after the loop: what was killed is counted, not asked again
        nonlocal killed
        killed += kill_workers_mid_run(driver, workdir)
        return killed >= 1

    wait_for(killed_one)  # their runs are lost mid-way, and retried
    wait_for(lambda: stored_runs(workdir) >= 6)
    # a notebook meanwhile: complete runs are whole, a running one is the start of what it will be. Runs
    # write their fields before their length and status, so the status and length read first are never
    # ahead of the fields read after them.
    midway = open_campaign(workdir).fields("nvt", complete_only=False).sortby("temperature")
    midway = midway[["run_status", "n_valid_time"]].load().merge(midway[["slab_temperature"]].load())
    kill_session(driver)  # the driver and everything it started, at once
    status = midway.run_status.values
    assert set(np.unique(status)) <= {store.RUN_MISSING, store.RUN_COMPLETE, store.RUN_RUNNING}
    assert 6 <= int((status == store.RUN_COMPLETE).sum()) < 18
    for index in zip(*np.nonzero(status != store.RUN_MISSING)):
        n_valid = int(midway.n_valid_time.values[index])
        seen = midway.slab_temperature.values[index][:n_valid]
        np.testing.assert_array_equal(seen, expected["slab_temperature"][index][:n_valid])
        # a running run's last flush may hold all 30 frames before its final write marks it complete
        assert n_valid == 30 if status[index] == store.RUN_COMPLETE else 0 < n_valid <= 30

    resumed = run(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = values(workdir)
    for name, value in expected.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    with Ledger(workdir / "ledger.sqlite", readonly=True) as ledger:
        rows = ledger.tasks(stage="production")
        assert len(rows) == 18 and all(row.state == "done" for row in rows)
        assert any("lost" in message for _, _, message in ledger.events(200))  # the killed workers' runs


def signal_the_group(driver: subprocess.Popen, signum: int) -> None:
    """As a terminal's Ctrl-C, `kill -- -PGID` or `timeout` signal the driver's process group."""
    os.killpg(driver.pid, signum)


def signal_every_process_of_the_job(driver: subprocess.Popen, signum: int) -> None:
    """As a batch system ending the driver's job signals every process the job holds."""
    for process in session_of(driver):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


@pytest.mark.slow
@pytest.mark.parametrize("signum,send", [(signal.SIGINT, signal_the_group), (signal.SIGTERM, signal_the_group),
                                         (signal.SIGTERM, signal_every_process_of_the_job)],
                         ids=["ctrl-c", "sigterm-to-the-group", "sigterm-to-every-process-of-the-job"])
def test_a_signal_for_the_driver_s_processes_stops_the_campaign_cleanly_and_leaves_nothing_running(
        tmp_path, signum, send):
    """A terminal's Ctrl-C sends SIGINT to its whole foreground process group, `kill -- -PGID` and
    `timeout` send SIGTERM to it, a batch system ending the driver's job sends SIGTERM to every
    process of the job: the driver and what it started (Parsl's interchange and here its local
    worker pools, Dask's workers). The driver stops as on a SIGTERM of its own (exit 130, how to
    resume); no helper prints a traceback or outlives it. Parsl's interchange used to die of these
    signals and leave the driver's cleanup waiting for it forever (`campaign.interchange`)."""
    workdir = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", production_campaign(workdir))
    driver = subprocess.Popen([sys.executable, "-m", "campaign.cli", "run", str(config)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a shell's
    try:
        wait_for(lambda: stored_runs(workdir) >= 1)  # Parsl and Dask both under way
        send(driver, signum)
        output, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            kill_session(driver)
    assert driver.returncode == 130, output[-3000:]
    assert "interrupted" in output and f"resume with: campaign run {config}" in output
    assert "Traceback" not in output, output[-3000:]
    wait_for(lambda: not session_of(driver), 60)
    with Ledger(workdir / "ledger.sqlite", readonly=True) as ledger:
        assert any("interrupted" in message for _, _, message in ledger.events(50))
        assert not ledger.tasks(state="running")  # what `campaign status` shows: nothing runs


def test_a_structure_file_is_kept_only_while_it_holds_what_the_config_builds(tmp_path):
    """A rerun keeps a system's file (its tasks' content hashes stay); a system whose builder
    parameters changed is written anew even with as many atoms, so its runs are new runs."""
    data = production_campaign(tmp_path / "run")
    path = base_structure(load_config(write_config(tmp_path / "first.yaml", data)), "bulk")
    written = path.stat().st_mtime_ns, path.read_bytes()
    assert base_structure(load_config(tmp_path / "first.yaml"), "bulk") == path
    assert (path.stat().st_mtime_ns, path.read_bytes()) == written
    data["systems"][0]["params"]["lattice_constant"] = 3.47
    base_structure(load_config(write_config(tmp_path / "second.yaml", data)), "bulk")
    stored = ase.io.read(path)
    assert len(stored) == 54 and np.allclose(stored.cell.lengths(), 3 * 3.47)


def chunk_digests(workdir: Path) -> dict[str, str]:
    study = workdir / "fields.zarr" / "nvt"
    return {str(p.relative_to(study)): hashlib.sha256(p.read_bytes()).hexdigest() for p in study.glob("*/c.*")
            if p.parent.name not in ("temperature", "replica")}


@pytest.mark.slow
def test_a_temperature_added_to_a_finished_study_runs_only_the_new_runs(tmp_path):
    workdir = tmp_path / "grow"
    first = run(write_config(tmp_path / "first.yaml", production_campaign(workdir, [250, 450], replicas=1)))
    assert first.returncode == 0, first.stderr[-3000:]
    before = chunk_digests(workdir)
    second = run(write_config(tmp_path / "second.yaml", production_campaign(workdir, [250, 350, 450], replicas=1)))
    assert second.returncode == 0, second.stderr[-3000:]
    after = chunk_digests(workdir)
    assert {k: after[k] for k in before} == before  # the finished runs' chunks: byte-identical
    with Ledger(workdir / "ledger.sqlite", readonly=True) as ledger:
        rows = ledger.tasks(stage="production")
        assert len(rows) == 3 and all(row.attempts == 1 for row in rows)  # only the new run ran
        assert any("grown in place" in message for _, _, message in ledger.events(50))
    data = open_campaign(workdir).fields("nvt")
    assert data.temperature.values.tolist() == [250, 450, 350]
    assert data.run_status.values.ravel().tolist() == [1, 1, 1]
    # another stride is another layout: refused before the stages ahead of production (here a
    # property) spend anything, with the reason and no traceback
    changed = production_campaign(workdir, [250, 350, 450], replicas=1)
    changed["production"][0]["params"]["trajectory_stride"] = 200
    changed["properties"] = {"potentials": ["meam"], "compute": ["eos"]}
    third = run(write_config(tmp_path / "third.yaml", changed))
    assert third.returncode == 1 and "Traceback" not in third.stderr, third.stderr[-3000:]
    assert "campaign stopped: study 'nvt' exists with another field layout" in third.stderr, third.stderr
    with Ledger(workdir / "ledger.sqlite", readonly=True) as ledger:
        assert not ledger.tasks(stage="properties")
    assert chunk_digests(workdir) == after


def test_a_model_file_runs_compressed_under_the_frozen_model_s_task_id(tmp_path):
    """A study given a DeePMD model file runs each run with a copy compressed in the run's own
    directory (4 times the steps per second of a 250-atom slab at 6.8 Å: 0.05 against 0.2 s), and
    its provenance names the file it ran; the task id hashes the frozen model, since `dp compress`
    writes other bytes each time. The final model is not compressed again: its training did it."""
    from campaign.production import allocate_studies, production_runs

    frozen = ROOT / "data/li-gpaw/models/member-0.pth"
    data = production_campaign(tmp_path / "run", temperatures=[300], replicas=1)
    data["systems"][0]["params"] = {"lattice_constant": 3.44, "size": 2}
    data["production"][0].update(potential=str(frozen), params={"steps": 40, "trajectory_stride": 20},
                                 fields=["potential_energy"])
    config = load_config(write_config(tmp_path / "model-file.yaml", data))
    allocate_studies(config)
    [ref] = production_runs(config, [])
    assert ref.spec.kwargs["compress"] and ref.spec.kwargs["potential"].models == [str(frozen)]
    assert production_runs(load_config(tmp_path / "model-file.yaml"), [])[0].spec.task_id == ref.spec.task_id
    outputs = ref.spec.function(**ref.spec.kwargs)
    assert outputs["status"] == "ok" and outputs["steps_done"] == 40
    assert (ref.spec.output_dir / "model-0-compressed.pth").is_file()
    fields = open_campaign(tmp_path / "run").fields("nvt")
    provenance = json.loads(str(fields.provenance.values.ravel()[0]))
    assert provenance["md_models"] == ["model-0-compressed.pth"] and provenance["model_sha256"] == {
        frozen.name: hashlib.sha256(frozen.read_bytes()).hexdigest()}
    data["production"][0]["potential"] = "final_model"
    final = load_config(write_config(tmp_path / "final-model.yaml", data))
    assert not production_runs(final, [str(frozen)])[0].spec.kwargs["compress"]
