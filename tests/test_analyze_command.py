"""`campaign analyze`: fields from a study's stored trajectories, and from a LAMMPS dump written by the
plain `lmp` binary, equal the fields the runs streamed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from storage import open_campaign

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["slab_temperature", "coordination", "structure_fractions", "msd", "rdf", "potential_energy"]


def campaign(workdir: Path) -> dict:
    return {
        "campaign": {"name": "analyze-test", "workdir": str(workdir), "seed": 4},
        "executors": {"cpu": {"max_workers": 1}, "gpu": {"max_workers": 2}},
        "systems": [{"name": "bulk", "builder": "bulk", "params": {"lattice_constant": 3.51, "size": 3}}],
        "production": [{"name": "nvt", "protocol": "nvt", "systems": ["bulk"], "potential": "meam",
                        "params": {"steps": 400, "trajectory_stride": 20}, "sweep": {"temperature": [300, 900]},
                        "fields": [*FIELDS, "trajectory"]}],
        "analysis": {"slab_width_angstrom": 3.0, "dashboard_port": 0},
    }


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "campaign.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("analyze")
    config = root / "analyze.yaml"
    config.write_text(yaml.safe_dump(campaign(root / "run")))
    result = cli("run", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    return config, root / "run"


def same_fields(ours, streamed, names, rtol: float = 1e-9) -> None:
    for name in names:
        np.testing.assert_allclose(np.asarray(ours[name].values, dtype=float),
                                   np.asarray(streamed[name].values, dtype=float), rtol=rtol, atol=1e-12,
                                   equal_nan=True, err_msg=name)


def test_fields_recomputed_from_stored_trajectories(finished):
    config, workdir = finished
    result = cli("analyze", str(config), "--study", "nvt", "--fields", *FIELDS, "--into", "nvt_again")
    assert result.returncode == 0, result.stderr[-3000:]
    campaign_store = open_campaign(workdir)
    streamed, again = campaign_store.fields("nvt"), campaign_store.fields("nvt_again")
    assert dict(again.run_status.sizes) == dict(streamed.run_status.sizes)
    assert int((again.run_status == 1).sum()) == 2
    names = [v for v in again.data_vars if v not in ("run_status", "n_valid_time")]
    assert {"slab_temperature", "rdf", "msd", "structure_fraction"} <= set(names)
    same_fields(again, streamed[names], names, rtol=1e-6)  # velocities and energies are stored in float32


def test_a_lammps_dump_from_plain_lmp_gives_the_fields_of_the_streamed_run(finished, tmp_path):
    config, workdir = finished
    (run_dir,) = [d for d in (workdir / "production" / "nvt").iterdir()
                  if "langevin 300.0 300.0" in (d / "in.lammps").read_text()]  # the 300 K run
    script = (run_dir / "in.lammps").read_text().splitlines()
    first_run = next(i for i, line in enumerate(script) if line.startswith("run ") and "run 0" not in line)
    dump = ["dump trajectory all custom 20 traj.dump id type xu yu zu vx vy vz c_peatom",
            "dump_modify trajectory sort id format float %.17g delay 1"]
    (tmp_path / "in.replay").write_text("\n".join(script[:first_run] + dump + script[first_run:]) + "\n")
    lmp = Path(sys.executable).with_name("lmp")
    replay = subprocess.run([str(lmp), "-in", "in.replay", "-log", "none", "-screen", "none"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0, replay.stdout[-2000:] + replay.stderr[-2000:]
    result = cli("analyze", str(config), "--ingest", str(tmp_path / "traj.dump"), "--into", "from_dump",
                 "--at", "temperature=300", "--fields", *FIELDS, "--timestep", "0.001")
    assert result.returncode == 0, result.stderr[-3000:]
    campaign_store = open_campaign(workdir)
    ingested = campaign_store.fields("from_dump").sel(temperature=300, replica=0)
    streamed = campaign_store.fields("nvt").sel(temperature=300, replica=0)
    names = [v for v in ingested.data_vars if v not in ("run_status", "n_valid_time")]
    assert len(names) >= 10
    same_fields(ingested, streamed[names], names)
    assert "traj.dump" in campaign_store.provenance("from_dump").source_file.iloc[0]
