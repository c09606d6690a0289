"""Smoke tests: each real component of the stack imports and does one small real thing."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from campaign.config import ExecutorSection
from tasks.labellers.gpaw import GpawSettings
from tasks import build, label
from tasks.runtime import THREAD_SETTINGS, child_environment, new_lammps


def test_gpaw_two_atom_energy(tmp_path):
    atoms = build.bcc_bulk(3.43, 1)
    settings = GpawSettings(kpoint_density_per_angstrom=2.0).model_dump()
    record, result = label.label_one(atoms, "gpaw", settings, tmp_path, "li2")
    assert record.status == "ok", record.message
    # GPAW energies are relative to isolated reference atoms: bcc Li binds at about -1.9 eV/atom.
    assert -2.3 < record.energy_ev / 2 < -1.5
    assert np.abs(result.get_forces()).max() < 1e-3  # perfect crystal


def test_lammps_runs_deepmd_model(tiny_ensemble, tmp_path):
    lmp = new_lammps(tmp_path / "log.lammps")
    lmp.commands_string(f"""
        units metal
        boundary p p p
        lattice bcc 3.51
        region box block 0 3 0 3 0 3
        create_box 1 box
        create_atoms 1 box
        mass 1 6.94
        pair_style deepmd {tiny_ensemble[0].model_path}
        pair_coeff * *
        velocity all create 300 1
        fix nve all nve
        run 10
    """)
    assert lmp.get_natoms() == 54
    energy = lmp.get_thermo("pe") / 54
    assert np.isfinite(energy) and -2.5 < energy < -1.0
    lmp.close()


def test_parsl_htex_app(tmp_path, monkeypatch):
    import parsl
    from parsl import python_app

    from campaign.executors import make_parsl_config

    # The app below is pickled by reference to this test module: workers must be able to import it.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    config = make_parsl_config({"cpu": ExecutorSection(max_workers=2)}, tmp_path / "parsl")

    @python_app(executors=["cpu"])
    def worker_pid_and_square(x: int) -> tuple[int, int]:
        import os

        return os.getpid(), x * x

    with parsl.load(config):
        results = [worker_pid_and_square(i).result(timeout=120) for i in range(4)]
    assert [square for _, square in results] == [0, 1, 4, 9]
    assert os.getpid() not in {pid for pid, _ in results}  # ran in worker processes
    parsl.clear()


def test_dask_local_cluster_task():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        assert cluster.dashboard_link.startswith("http://127.0.0.1:")


def test_zarr_v3_round_trip(tmp_path):
    import xarray as xr
    import zarr

    data = xr.Dataset({"slab_temperature": (("time", "z"), np.arange(12.0).reshape(3, 4))},
                      coords={"time": [0.0, 1.0, 2.0], "z": [5.0, 15.0, 25.0, 35.0]})
    data.slab_temperature.attrs["units"] = "K"
    data.to_zarr(tmp_path / "s.zarr", zarr_format=3)
    assert zarr.open_group(tmp_path / "s.zarr").metadata.zarr_format == 3
    back = xr.open_zarr(tmp_path / "s.zarr")
    np.testing.assert_array_equal(back.slab_temperature.values, data.slab_temperature.values)
    assert back.slab_temperature.attrs["units"] == "K"


def test_ovito_and_freud_import():
    import freud
    import ovito.modifiers

    assert hasattr(ovito.modifiers, "CommonNeighborAnalysisModifier")
    assert freud.__version__


@pytest.mark.parametrize("provider,fields", [
    ("slurm", {"partition": "gpu", "account": "li", "walltime": "12:00:00", "max_blocks": 4}),
    ("pbspro", {"queue": "workq", "account": "li"}),
    ("lsf", {"queue": "batch", "account": "li"}),
])
def test_cluster_providers_pass_through(provider, fields):
    from campaign.executors import make_executor

    executor = make_executor("gpu", ExecutorSection(provider=provider, worker_init="module load x", **fields))
    assert executor.provider.walltime == fields.get("walltime", "01:00:00")
    assert "module load x" in executor.provider.worker_init
    assert "OMP_NUM_THREADS=1" in executor.provider.worker_init




def test_fields_start_no_thread_pool_in_a_worker():
    """A worker computes a-CNA (Numba's OpenMP layer) between MD segments in the process where
    DeePMD runs on PyTorch; both use the one libgomp, and a second OpenMP thread there spins
    beside DeePMD's. In a worker's environment the kernels must start no thread."""
    script = ("import os, numpy as np\n"
              "from ase.build import bulk\n"
              "from tasks.fields.neighbours import adaptive_cna\n"
              "atoms = bulk('Li', 'bcc', 3.44, cubic=True).repeat(8)\n"
              "before = len(os.listdir('/proc/self/task'))\n"
              "adaptive_cna(atoms.positions, np.zeros(3), np.diag(atoms.cell.array), (True, True, True))\n"
              "print(before, len(os.listdir('/proc/self/task')))\n")
    # a driver started without Numba settings: the exports of the executors' worker_init must pin it
    driver_environment = {k: v for k, v in child_environment().items() if not k.startswith("NUMBA_")}
    worker_environment = {**driver_environment, **THREAD_SETTINGS}
    done = subprocess.run([sys.executable, "-c", script], env=worker_environment, cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, check=True)
    before, after = done.stdout.split()[-2:]
    assert after == before
