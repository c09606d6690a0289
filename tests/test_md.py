"""LAMMPS protocols through tasks.md: every protocol runs, failures are reported, deposition is exact."""

import time

import numpy as np
import pytest

from tasks import analyze, build, md


def test_nvt_streams_frames_and_writes_outputs(tmp_path):
    frames = []
    result = md.run_md(build.bcc_bulk(3.51, 3), md.Potential("snap"), "nvt",
                       {"temperature": 300, "steps": 200, "trajectory_stride": 50}, tmp_path,
                       callbacks=[frames.append], save_trajectory=True)
    assert result.status == "ok", result.reason
    assert result.n_frames == 4 and [f.step for f in frames] == [50, 100, 150, 200]
    assert np.all(np.isfinite(frames[-1].potential_energy)) and frames[-1].potential_energy.mean() < -1.5
    thermo = np.loadtxt(tmp_path / "thermo.csv", delimiter=",", skiprows=1)
    assert thermo.shape == (4, 9)
    stored = md.load_trajectory(tmp_path / "trajectory")
    np.testing.assert_array_equal(stored[-1].positions, frames[-1].positions)
    assert md.read_result(tmp_path).final_structure.endswith("final.extxyz")


def test_written_script_replays_the_run_exactly(tmp_path):
    """`in.lammps` is what ran, run commands included: replayed, it ends on the same energies, to the bit."""
    from tasks.runtime import new_lammps

    result = md.run_md(build.bcc_bulk(3.51, 3), md.Potential("meam"), "nvt",
                       {"temperature": 600, "steps": 300, "trajectory_stride": 50}, tmp_path)
    assert result.status == "ok", result.reason
    ours = np.loadtxt(tmp_path / "thermo.csv", delimiter=",", skiprows=1)[-1]
    replay = new_lammps(tmp_path / "replay.log")
    replay.file(str(tmp_path / "in.lammps"))
    replayed = [replay.get_thermo(key) for key in ("step", "pe", "ke")]
    replay.close()
    assert replayed == [ours[0], ours[3], ours[4]]


def test_positions_are_unwrapped_across_the_boundary(tmp_path):
    frames = []
    md.run_md(build.bcc_bulk(3.51, 3), md.Potential("snap"), "nvt",
              {"temperature": 2000, "steps": 600, "trajectory_stride": 20, "damping_ps": 0.05},
              tmp_path, callbacks=[frames.append])
    steps = np.abs(np.diff(np.array([f.positions for f in frames]), axis=0))
    assert steps.max() < 5.0  # a wrapped atom would jump by a box length (10.5 Å)


@pytest.mark.parametrize("protocol,params", [
    ("npt", {"temperature": 300, "pressure": 1.0, "steps": 100}),
    ("heat_quench", {"temperature_heat": 500, "heat_duration": 0.05, "temperature": 300, "quench_rate": 4000,
                     "duration": 0.05, "thermostat": "nose_hoover"}),
    ("melting_coexistence", {"temperature": 450, "temperature_melt": 1200, "melt_duration": 0.05, "steps": 50}),
    ("moving_restraint", {"temperature": 300, "steps": 100, "cv_start": 8.0, "cv_end": 7.0, "group_ids": [1, 2]}),
    ("nvt", {"temperature": 300, "steps": 100, "thermostat": "berendsen"}),
])
def test_protocols_run(tmp_path, protocol, params):
    result = md.run_md(build.bcc_bulk(3.51, 3), md.Potential("meam"), protocol,
                       {**params, "trajectory_stride": 25}, tmp_path)
    assert result.status == "ok", result.reason
    assert result.steps_done == sum(s.steps for s in md.segments_for(protocol, {**params}, build.bcc_bulk(3.51, 3)))
    if protocol == "moving_restraint":
        assert (tmp_path / "colvars.colvars.traj").exists()


def test_blown_up_run_is_reported_quickly(tmp_path):
    started = time.perf_counter()
    result = md.run_md(build.bcc_bulk(3.51, 3), md.Potential("snap"), "nvt",
                       {"temperature": 300, "steps": 5000, "timestep": 0.05, "trajectory_stride": 10}, tmp_path)
    assert time.perf_counter() - started < 60
    assert result.status == "failed"
    assert result.reason  # lost atoms, atoms too close, or runaway temperature
    assert (tmp_path / "last_good.extxyz").exists()


def test_deposition_schedule():
    assert md.deposition_schedule(5.0, 3.0, 0.001) == (15, 200)
    with pytest.raises(ValueError, match="more than one atom per step"):
        md.deposition_schedule(5000.0, 1.0, 0.001)


def test_ensemble_writes_model_deviation(tmp_path, tiny_ensemble):
    potential = md.Potential("deepmd", [m.model_path for m in tiny_ensemble])
    result = md.run_md(build.bcc_bulk(3.51, 2), potential, "nvt",
                       {"temperature": 600, "steps": 100, "trajectory_stride": 25}, tmp_path)
    assert result.status == "ok", result.reason
    deviation = np.loadtxt(tmp_path / "model_devi.out")
    assert set(deviation[:, 0].astype(int)) == {0, 25, 50, 75, 100}  # step column, every stride
    assert np.all(deviation[:, 4] > 0)  # max force deviation column


def deposit(tmp_path, potential, slab, duration, frames):
    return md.run_md(slab, potential, "deposition",
                     {"temperature": 300, "rate": 5.0, "duration": duration, "falling_speed": 1500,
                      "insertion_height_angstrom": 6.0, "trajectory_stride": 100},
                     tmp_path, callbacks=[frames.append])


def check_deposition_bookkeeping(result, frames, rate, duration):
    assert result.status == "ok", result.reason
    assert abs((result.n_atoms_end - result.n_atoms_start) - rate * duration) <= 1
    first, last = frames[0], frames[-1]
    fixed_before = first.positions[first.fixed]
    fixed_after = last.positions[np.isin(last.ids, first.ids[first.fixed])]
    assert np.abs(fixed_after - fixed_before).max() < 1e-9
    assert np.all(np.diff(result.inserted_time_ps) > 0)


@pytest.mark.slow
def test_deposited_atoms_land_with_snap(tmp_path):
    """Landing is physics: checked with the SNAP potential, which binds adatoms like DFT."""
    slab = build.slab((1, 0, 0), 6, (4, 4), vacuum_angstrom=10.0, fixed_layers=2)
    frames = []
    result = deposit(tmp_path, md.Potential("snap"), slab, 1.6, frames)
    check_deposition_bookkeeping(result, frames, 5.0, 1.6)
    last = frames[-1]
    early = np.isin(last.ids, result.inserted_ids[:3])  # inserted at least 1 ps before the end
    assert np.all(last.positions[early, 2] < slab.positions[:, 2].max() + 4.0), "deposited atoms must land"


@pytest.mark.slow
def test_deposition_with_deepmd_model(tmp_path, tiny_ensemble):
    """The DeePMD path at the size of the study's small runs: 512 atoms, exact insertion count."""
    slab = build.slab((1, 0, 0), 8, (8, 8), vacuum_angstrom=10.0, fixed_layers=3)
    frames = []
    temperatures = analyze.StreamingAnalysis([analyze.SlabTemperature(5.0)])
    result = md.run_md(slab, md.Potential("deepmd", [tiny_ensemble[0].model_path]), "deposition",
                       {"temperature": 300, "rate": 5.0, "duration": 2.0, "falling_speed": 1500,
                        "insertion_height_angstrom": 6.0, "trajectory_stride": 100},
                       tmp_path, callbacks=[frames.append, temperatures])
    check_deposition_bookkeeping(result, frames, 5.0, 2.0)
    wall = md.deposition_box_height(slab, {"rate": 5.0, "duration": 2.0, "insertion_height_angstrom": 6.0}) \
        - md.IMAGE_GAP_ANGSTROM
    inserted = np.isin(frames[-1].ids, result.inserted_ids)
    assert np.all(frames[-1].positions[inserted, 2] < wall)
    dataset = temperatures.result()
    assert np.nanmax(dataset.atoms_per_slab.values[-1]) > 0


def test_moving_restraint_starts_at_the_structures_own_coordination(tmp_path):
    atoms = build.rattled(build.bcc_bulk(3.51, 2), 0.05, 3)
    expected = md.coordination_cv(atoms, list(range(len(atoms))), None, 3.2)
    result = md.run_md(atoms, md.Potential("meam"), "moving_restraint",
                       {"temperature": 300, "steps": 20, "group_elements": ["Li"], "cv_change_fraction": -0.1,
                        "trajectory_stride": 10}, tmp_path)
    assert result.status == "ok", result.reason
    rows = [line.split() for line in (tmp_path / "colvars.colvars.traj").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert float(rows[0][1]) == pytest.approx(expected, rel=1e-4)  # Colvars' own CV at step 0
    centre = [line for line in (tmp_path / "restraint.colvars").read_text().splitlines() if "centers" in line]
    assert float(centre[0].split()[1]) == pytest.approx(expected)


def test_deposition_under_two_mpi_ranks(tmp_path, tiny_ensemble):
    """`mpi_ranks: 2` runs the job under mpirun: same bookkeeping, every frame reaches the callbacks."""
    slab = build.slab((1, 0, 0), 6, (4, 4), vacuum_angstrom=10.0, fixed_layers=2)
    frames = []
    result = md.run_md(slab, md.Potential("deepmd", [tiny_ensemble[0].model_path]), "deposition",
                       {"temperature": 300, "rate": 5.0, "duration": 1.0, "falling_speed": 1500,
                        "insertion_height_angstrom": 6.0, "trajectory_stride": 100, "mpi_ranks": 2},
                       tmp_path, callbacks=[frames.append])
    check_deposition_bookkeeping(result, frames, 5.0, 1.0)
    assert [f.step for f in frames] == list(range(100, 1001, 100))
    assert "on 2 procs" in (tmp_path / "log.lammps").read_text()
    assert not (tmp_path / "trajectory").exists()  # only kept to replay the frames


def test_mpi_job_that_dies_is_a_failed_run(tmp_path):
    result = md.run_md(build.bcc_bulk(3.51, 2), md.Potential("snap"), "nvt",
                       {"temperature": 300, "steps": 10, "mpi_ranks": 2, "mpi_launcher": "sh -c 'exit 3' {ranks}"},
                       tmp_path)
    assert result.status == "failed"
    assert "exited 3 without a result" in result.reason
