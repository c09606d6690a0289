"""The cluster path for real, on a one-node SLURM (scripts/slurm_local.sh, started and stopped here):
Parsl blocks submitted through sbatch, a block cancelled mid-task and one reaching its walltime,
the driver stopped by SIGTERM and resumed, MD on two ranks through srun, and the analysis on a
dask_jobqueue SLURM cluster."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from campaign.ledger import Ledger
from storage import open_campaign

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm_local.sh"


@pytest.fixture(scope="module")
def slurm():
    subprocess.run(["bash", str(SCRIPT), "start"], check=True, timeout=600)
    yield
    subprocess.run(["scancel", "--user", "root"], check=False, timeout=60)
    subprocess.run(["bash", str(SCRIPT), "stop"], check=True, timeout=120)
    left = [name for name in ("slurmd", "slurmctld", "munged") if subprocess.run(["pgrep", "-x", name]).returncode == 0]
    assert not left, f"the test cluster left {left} behind"


def slurm_executor(**changes) -> dict:
    # shared nodes: the one-node cluster holds a cpu and a gpu block side by side; a study with no
    # task for one of them starts none of its blocks (init_blocks 0): an idle block holds a core
    # until Parsl scales it in after two minutes, and a 2-core block would wait for it
    return {"provider": "slurm", "partition": "debug", "max_workers": 1, "init_blocks": 1, "max_blocks": 1,
            "walltime": "00:10:00", "exclusive": False, **changes}


def campaign(workdir: Path, **changes) -> dict:
    data = {
        "campaign": {"name": "slurm-test", "workdir": str(workdir), "seed": 2, "max_retries": 3},
        "executors": {"cpu": slurm_executor(), "gpu": slurm_executor()},
        "systems": [{"name": "bulk", "builder": "bulk", "params": {"lattice_constant": 3.45, "size": 2},
                     "rattle_copies": 5, "rattle_stdev_angstrom": 0.08}],
        "label": {"engine": "reference", "reference": {"potential": "snap"}},
        "train": {"ensemble_size": 1, "steps": 60, "decay_steps": 20, "fitting_neuron": [8],
                  "descriptor": {"neuron": [4, 8], "axis_neuron": 2}},
        "production": [{"name": "nvt", "protocol": "nvt", "systems": ["bulk"], "potential": "meam",
                        "params": {"steps": 400, "trajectory_stride": 50}, "sweep": {"temperature": [300, 600]},
                        "fields": ["slab_temperature", "structure_fractions"]}],
        "analysis": {"slab_width_angstrom": 3.0, "dashboard_port": 0},
    }
    data.update(changes)
    return data


def run(config: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "campaign.cli", "run", str(config)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def submit_scripts(workdir: Path, label: str) -> list[Path]:
    """The batch scripts Parsl wrote for the blocks of one executor (beside their .stdout/.stderr)."""
    return [p for p in (workdir / "parsl").glob(f"*/submit_scripts/parsl.{label}.block-*") if p.suffix not in
            (".stdout", ".stderr")]


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_label_train_production_campaign_on_slurm(slurm, tmp_path):
    study = {"name": "nvt", "protocol": "nvt", "systems": ["bulk"], "potential": "final_model",
             "params": {"steps": 200, "trajectory_stride": 50}, "sweep": {"temperature": [300, 600]},
             "fields": ["slab_temperature", "structure_fractions"]}
    config = write(tmp_path / "slurm.yaml", campaign(tmp_path / "run", production=[study]))
    result = run(config)
    assert result.returncode == 0, result.stderr[-3000:]
    scripts = submit_scripts(tmp_path / "run", "cpu") + submit_scripts(tmp_path / "run", "gpu")
    assert scripts and all("#SBATCH" in s.read_text() for s in scripts)  # blocks went through sbatch
    with Ledger(tmp_path / "run" / "ledger.sqlite", readonly=True) as ledger:
        assert {row.stage for row in ledger.tasks()} == {"label", "train-0", "production"}
        assert all(row.state == "done" for row in ledger.tasks())
    assert int((open_campaign(tmp_path / "run").fields("nvt").run_status == 1).sum()) == 2
    # the batch log shows where the campaign stood, stage by stage
    for stage in ("label:", "train-0:", "production:"):
        assert any(line.startswith(stage) and "done" in line for line in result.stdout.splitlines()), stage


def long_production(workdir: Path, walltime: str, runs: int) -> dict:
    """MD runs of about 12 s each here, twice as many as one block's life holds."""
    return campaign(workdir, label={"engine": "reference", "systems": []}, production=[{
        "name": "nvt", "protocol": "nvt", "systems": ["bulk"], "potential": "meam",
        "params": {"steps": 150000, "trajectory_stride": 12500}, "sweep": {"temperature": [300 + 10 * k
                                                                                          for k in range(runs)]},
        "fields": ["slab_temperature"]}], executors={"cpu": slurm_executor(init_blocks=0), "gpu": slurm_executor(
            walltime=walltime)})


def squeue_blocks() -> list[tuple[str, str]]:
    listing = subprocess.run(["squeue", "-h", "-o", "%i|%T|%j"], capture_output=True, text=True).stdout
    return [tuple(line.split("|")[:2]) for line in listing.splitlines() if "parsl.gpu" in line]


def driver_with_a_run_under_way(config: Path, settle_s: float) -> subprocess.Popen:
    """`campaign run` in the background, returned `settle_s` after one of its blocks started
    running (a run is then under way in it)."""
    driver = subprocess.Popen([sys.executable, "-m", "campaign.cli", "run", str(config)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and driver.poll() is None and not any(state == "RUNNING"
                                                                       for _, state in squeue_blocks()):
        time.sleep(1)
    time.sleep(settle_s)
    return driver


@pytest.mark.slow
def test_a_cancelled_block_and_a_walltime_lose_nothing(slurm, tmp_path):
    """scancel of the block mid-task: its run is retried in a new block. A 1-minute walltime: the
    block drains 10 s before it, the next block takes the rest. Every run done once and stored."""
    config = write(tmp_path / "long.yaml", long_production(tmp_path / "run", "00:01:00", 10))
    driver = driver_with_a_run_under_way(config, 8)
    try:
        status = subprocess.run([sys.executable, "-m", "campaign.cli", "status", str(config)], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert "blocks (SLURM)" in status.stdout and "RUNNING" in status.stdout, status.stdout
        (job, _), *_ = [b for b in squeue_blocks() if b[1] == "RUNNING"]
        subprocess.run(["scancel", job], check=True)
        output, _ = driver.communicate(timeout=1500)
    finally:
        if driver.poll() is None:
            driver.terminate()  # a failed assertion leaves no driver submitting blocks
            driver.wait(timeout=120)
    assert driver.returncode == 0, output[-3000:]
    with Ledger(tmp_path / "run" / "ledger.sqlite", readonly=True) as ledger:
        rows = ledger.tasks(stage="production")
        assert len(rows) == 10 and all(row.state == "done" for row in rows)
        assert any(row.attempts > 1 for row in rows)  # the cancelled block's run, retried
        events = [message for _, _, message in ledger.events(500)]
    assert any("lost" in message for message in events)
    fields = open_campaign(tmp_path / "run").fields("nvt")
    assert int((fields.run_status == 1).sum()) == 10 and int(fields.n_valid_time.min()) == 12
    submitted = submit_scripts(tmp_path / "run", "gpu")
    assert len(submitted) >= 3  # the first block, the one after scancel, and the ones after walltimes


@pytest.mark.slow
def test_sigterm_of_the_driver_cancels_its_blocks_and_the_rerun_resumes(slurm, tmp_path):
    """`scancel` of the driver's own job sends it SIGTERM: it stops cleanly (exit 130, how to
    resume), its blocks are cancelled, and `campaign run` then finishes what was left."""
    config = write(tmp_path / "stop.yaml", long_production(tmp_path / "run", "00:10:00", 3))
    driver = driver_with_a_run_under_way(config, 5)
    try:
        driver.send_signal(signal.SIGTERM)
        output, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=60)
    assert driver.returncode == 130, output[-3000:]
    assert "interrupted" in output and f"resume with: campaign run {config}" in output
    deadline = time.time() + 60
    while squeue_blocks() and time.time() < deadline:
        time.sleep(1)
    assert not squeue_blocks()  # nothing left holding the allocation
    result = run(config)
    assert result.returncode == 0, result.stderr[-3000:]
    with Ledger(tmp_path / "run" / "ledger.sqlite", readonly=True) as ledger:
        rows = ledger.tasks(stage="production")
        assert len(rows) == 3 and all(row.state == "done" for row in rows)
    assert int((open_campaign(tmp_path / "run").fields("nvt").run_status == 1).sum()) == 3


@pytest.mark.slow
def test_md_on_two_ranks_through_srun(slurm, tmp_path):
    data = campaign(tmp_path / "run", label={"engine": "reference", "systems": []}, production=[{
        "name": "mpi", "protocol": "nvt", "systems": ["bulk"], "potential": "meam",
        "params": {"steps": 400, "trajectory_stride": 100, "temperature": 300, "mpi_ranks": 2,
                   "mpi_launcher": "srun --overlap --mpi=pmi2 -n {ranks}"}, "fields": ["slab_temperature"]}],
        executors={"cpu": slurm_executor(init_blocks=0),
                   "gpu": slurm_executor(scheduler_options="#SBATCH --cpus-per-task=2")})
    result = run(write(tmp_path / "mpi.yaml", data))
    assert result.returncode == 0, result.stderr[-3000:]
    (log,) = (tmp_path / "run" / "production" / "mpi").glob("*/log.lammps")
    assert "on 2 procs" in log.read_text()
    assert int(open_campaign(tmp_path / "run").fields("mpi").run_status.sum()) == 1


@pytest.mark.slow
def test_reductions_on_a_dask_slurm_cluster(slurm, tmp_path):
    data = campaign(tmp_path / "run", label={"engine": "reference", "systems": []},
                    analysis={"slab_width_angstrom": 3.0, "dashboard_port": 0, "dask_cluster": "slurm",
                              "dask_workers": 1, "dask_slurm": {
                                  "queue": "debug", "cores": 1, "memory": "2GB", "walltime": "00:10:00",
                                  "processes": 1, "log_directory": str(tmp_path / "dask-logs")}},
                    executors={"cpu": slurm_executor(init_blocks=0), "gpu": slurm_executor()})
    result = run(write(tmp_path / "dask.yaml", data))
    assert result.returncode == 0, result.stderr[-3000:]
    logs = [p.read_text() for p in (tmp_path / "dask-logs").glob("*.err")]
    assert logs and any("Start worker" in text or "Starting Worker" in text for text in logs)  # a SLURM job
    assert "production study nvt" in result.stdout  # its rows were reduced there as the runs landed
    status = np.asarray(open_campaign(tmp_path / "run").fields("nvt").run_status.values)
    assert int((status == 1).sum()) == 2
