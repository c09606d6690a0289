"""LAMMPS protocols through tasks.md: every protocol runs, failures are reported, deposition is exact."""

import time

import numpy as np
import pytest

from tasks import analyze, build, md
from tasks.fields import FieldStream, make_fields
from tasks.protocols import PROTOCOLS
from tasks.geometry import IMAGE_GAP_ANGSTROM
from tasks.protocols.deposition import deposition_schedule
from tasks.protocols.moving_restraint import CoordinationTerm, coordination_cv


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


def test_frames_carry_positions_averaged_over_their_window(tmp_path):
    """Each frame's `mean_positions` are its atoms' unwrapped positions averaged over samples of
    the `frame_average_steps` before it: the numbers an every-step trajectory of the same run gives."""
    params = {"temperature": 300, "steps": 100, "seed": 7}
    every, averaged = [], []
    md.run_md(build.bcc_bulk(3.51, 3), md.Potential("snap"), "nvt", {**params, "trajectory_stride": 1},
              tmp_path / "every", callbacks=[every.append])
    md.run_md(build.bcc_bulk(3.51, 3), md.Potential("snap"), "nvt",
              {**params, "trajectory_stride": 50, "frame_average_steps": 40}, tmp_path / "averaged",
              callbacks=[averaged.append], save_trajectory=True)
    assert [f.step for f in averaged] == [50, 100]
    step, repeat = md.frame_average_sampling(40, 50)
    assert (step, repeat) == (2, 20)
    for frame in averaged:
        window = [f.positions for f in every if frame.step - step * repeat < f.step <= frame.step
                  and (frame.step - f.step) % step == 0]
        assert len(window) == 20
        np.testing.assert_allclose(frame.mean_positions, np.mean(window, axis=0), atol=1e-9)
    assert every[-1].mean_positions is None
    np.testing.assert_array_equal(md.load_trajectory(tmp_path / "averaged" / "trajectory")[-1].mean_positions,
                                  averaged[-1].mean_positions)


@pytest.mark.parametrize("temperature,bcc", [(300, (0.95, 1.0)), (2000, (0.0, 0.1))])
def test_time_averaged_acna_sees_the_hot_crystal_and_no_lattice_in_the_melt(tmp_path, temperature, bcc):
    """SNAP keeps bcc Li at 300 K and melts at 2,000 K: a-CNA of 0.15 ps averages says both."""
    from tasks.fields.neighbours import STRUCTURES, adaptive_cna

    frames = []
    result = md.run_md(build.bcc_bulk(3.49, 4), md.Potential("snap"), "nvt",
                       {"temperature": temperature, "steps": 1000, "trajectory_stride": 250,
                        "frame_average_steps": 150, "damping_ps": 0.05, "seed": 11}, tmp_path, callbacks=[frames.append])
    assert result.status == "ok", result.reason
    frame = frames[-1]
    kinds = adaptive_cna(frame.mean_positions, frame.box_lo, frame.box_hi, (True, True, True))
    assert bcc[0] <= np.mean(kinds == STRUCTURES.index("bcc")) <= bcc[1]


@pytest.mark.parametrize("protocol,params,steps", [
    ("npt", {"temperature": 300, "pressure": 1.0, "steps": 100}, 100),
    ("heat_quench", {"temperature_heat": 500, "heat_duration": 0.05, "temperature": 300, "quench_rate": 4000,
                     "duration": 0.05}, 50 + 50 + 50),  # heat, quench 200 K at 4000 K/ps, hold; 1 fs
    ("melting_coexistence", {"temperature": 450, "temperature_melt": 1200, "melt_duration": 0.05, "steps": 50},
     50 + 50),
    ("moving_restraint", {"temperature": 300, "steps": 100, "cv_start": 8.0, "cv_end": 7.0, "force_constant_ev": 1.0,
                          "coordination_terms": [{"group_a": {"ids": [1, 2]}, "r0_angstrom": 3.2}]}, 100),
    ("nvt", {"temperature": 300, "steps": 100, "thermostat": "berendsen"}, 100),
    ("nvt", {"temperature": 300, "temperature_end": 600, "duration": 0.1}, 100),
])
def test_protocols_run(tmp_path, protocol, params, steps):
    result = md.run_md(build.bcc_bulk(3.51, 3), md.Potential("meam"), protocol,
                       {**params, "trajectory_stride": 25}, tmp_path)
    assert result.status == "ok", result.reason
    assert result.steps_done == steps
    if protocol == "moving_restraint":
        assert (tmp_path / "colvars.colvars.traj").exists()


def test_temperature_ramp_reaches_its_end(tmp_path):
    result = md.run_md(build.bcc_bulk(3.51, 4), md.Potential("meam"), "nvt",
                       {"temperature": 100, "temperature_end": 700, "steps": 2000, "trajectory_stride": 100,
                        "damping_ps": 0.05}, tmp_path)
    assert result.status == "ok", result.reason
    temperature = np.loadtxt(tmp_path / "thermo.csv", delimiter=",", skiprows=1)[:, 2]
    assert temperature[:3].mean() < 300 and temperature[-3:].mean() > 500


def test_npt_on_x_and_y_keeps_z(tmp_path):
    """The interface study's barostat: x and y relax under pressure, z stays as built."""
    atoms = build.bcc_bulk(3.40, (4, 4, 3))  # compressed: the box grows at 0 GPa
    result = md.run_md(atoms, md.Potential("meam"), "npt",
                       {"temperature": 300, "pressure": 0.0, "barostat": "xy", "steps": 1000, "trajectory_stride": 100,
                        "barostat_damping_ps": 0.2}, tmp_path)
    assert result.status == "ok", result.reason
    final = md.read_result(tmp_path).final_structure
    from ase.io import read

    lengths = read(final).cell.lengths()
    assert lengths[2] == pytest.approx(atoms.cell.lengths()[2], abs=1e-6)
    assert lengths[0] > atoms.cell.lengths()[0] + 0.05
def test_blown_up_run_is_reported_quickly(tmp_path):
    started = time.perf_counter()
    result = md.run_md(build.bcc_bulk(3.51, 3), md.Potential("snap"), "nvt",
                       {"temperature": 300, "steps": 5000, "timestep": 0.05, "trajectory_stride": 10}, tmp_path)
    assert time.perf_counter() - started < 60
    assert result.status == "failed"
    assert result.reason  # lost atoms, atoms too close, or runaway temperature
    assert (tmp_path / "last_good.extxyz").exists()


def test_deposition_schedule():
    assert deposition_schedule(5.0, 3.0, 0.001) == (15, 200)
    with pytest.raises(ValueError, match="more than one atom per step"):
        deposition_schedule(5000.0, 1.0, 0.001)


def test_ensemble_writes_model_deviation(tmp_path, tiny_ensemble):
    potential = md.Potential("deepmd", [m.model_path for m in tiny_ensemble])
    result = md.run_md(build.bcc_bulk(3.51, 2), potential, "nvt",
                       {"temperature": 600, "steps": 100, "trajectory_stride": 25}, tmp_path)
    assert result.status == "ok", result.reason
    deviation = np.loadtxt(tmp_path / "model_devi.out")
    assert set(deviation[:, 0].astype(int)) == {0, 25, 50, 75, 100}  # step column, every stride
    assert np.all(deviation[:, 4] > 0)  # max force deviation column


def deposit(tmp_path, potential, slab, duration, frames, frame_average_steps=0):
    return md.run_md(slab, potential, "deposition",
                     {"temperature": 300, "rate": 5.0, "duration": duration, "falling_speed": 1500,
                      "insertion_height_angstrom": 6.0, "trajectory_stride": 100,
                      "frame_average_steps": frame_average_steps},
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
    """Landing is physics: checked with the SNAP potential, which binds adatoms like DFT. With
    time-averaged positions, atoms that arrived since the previous frame keep their own."""
    slab = build.slab((1, 0, 0), 6, (4, 4), vacuum_angstrom=10.0, fixed_layers=2)
    frames = []
    result = deposit(tmp_path, md.Potential("snap"), slab, 1.6, frames, frame_average_steps=80)
    check_deposition_bookkeeping(result, frames, 5.0, 1.6)
    last = frames[-1]
    early = np.isin(last.ids, result.inserted_ids[:3])  # inserted at least 1 ps before the end
    assert np.all(last.positions[early, 2] < slab.positions[:, 2].max() + 4.0), "deposited atoms must land"
    for before, frame in zip(frames, frames[1:]):
        arrived = ~np.isin(frame.ids, before.ids)
        assert np.all(np.isfinite(frame.mean_positions))
        np.testing.assert_array_equal(frame.mean_positions[arrived], frame.positions[arrived])
        substrate = (frame.ids <= len(slab)) & ~frame.fixed  # atoms in flight move 1 Å in 0.08 ps
        offset = np.abs(frame.mean_positions[substrate] - frame.positions[substrate])
        assert 0 < offset.max() < 2.0  # averaged, and around where the atoms are (a half-filled sum is not)


@pytest.mark.slow
def test_deposition_with_deepmd_model(tmp_path, tiny_ensemble):
    """The DeePMD path at the size of the study's small runs: 512 atoms, exact insertion count
    (10 atoms in 1 ps, at 2 fs steps: the uncompressed model's 500 steps take a minute)."""
    slab = build.slab((1, 0, 0), 8, (8, 8), vacuum_angstrom=10.0, fixed_layers=3)
    frames = []
    params = {"temperature": 300, "rate": 10.0, "duration": 1.0, "timestep": 0.002, "falling_speed": 1500,
              "insertion_height_angstrom": 6.0, "trajectory_stride": 50}
    shape = analyze.run_shape(slab, "deposition", params)
    temperatures = FieldStream(make_fields([("slab_temperature", {"slab_width_angstrom": 5.0})], shape), shape)
    result = md.run_md(slab, md.Potential("deepmd", [tiny_ensemble[0].model_path]), "deposition", params,
                       tmp_path, callbacks=[frames.append, temperatures])
    check_deposition_bookkeeping(result, frames, 10.0, 1.0)
    protocol = PROTOCOLS["deposition"]
    wall = protocol.box_height(protocol.parse(params), slab) - IMAGE_GAP_ANGSTROM
    inserted = np.isin(frames[-1].ids, result.inserted_ids)
    assert np.all(frames[-1].positions[inserted, 2] < wall)
    dataset = temperatures.dataset()
    assert np.nanmax(dataset.atoms_per_slab.values[-1]) > 0


def test_deposition_stops_at_a_deposit_height(tmp_path):
    """Tip deposition into one small circle grows a column; the run ends when it is 4 Å tall."""
    slab = build.slab((1, 0, 0), 6, (4, 4), vacuum_angstrom=10.0, fixed_layers=2)
    params = {"temperature": 200, "rate": 20.0, "duration": 20.0, "falling_speed": 1000, "trajectory_stride": 100,
              "regions": [{"x": 7.0, "y": 7.0, "radius": 1.5}], "stop_at_deposit_height_angstrom": 4.0}
    shape = analyze.run_shape(slab, "deposition", params)
    stream = FieldStream(make_fields(analyze.field_specs(["deposit_geometry"]), shape), shape)
    result = md.run_md(slab, md.Potential("meam"), "deposition", params, tmp_path, callbacks=[stream])
    assert result.status == "ok", result.reason
    assert result.stop_reason.startswith("deposit height") and "reached 4.0" in result.stop_reason
    assert result.steps_done < 20000 and result.steps_done % 100 == 0
    # the field measures what the stopper measured, from the substrate's top (atoms were
    # already falling in the first frame: they are not the substrate)
    dataset = stream.dataset()
    assert float(dataset.substrate_top) == pytest.approx(slab.positions[:, 2].max(), abs=0.5)
    assert f"deposit height {float(dataset.deposit_height[stream.n_frames - 1]):.1f} Å" in result.stop_reason


def colvars_start(directory) -> float:
    rows = [line.split() for line in (directory / "colvars.colvars.traj").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return float(rows[0][1])  # Colvars' own CV at step 0


def test_moving_restraint_starts_at_the_structures_own_coordination(tmp_path):
    atoms = build.rattled(build.bcc_bulk(3.51, 2), 0.05, 3)
    terms = [CoordinationTerm(group_a={"elements": ["Li"]}, r0_angstrom=3.2)]
    expected = coordination_cv(atoms, terms)
    result = md.run_md(atoms, md.Potential("meam"), "moving_restraint",
                       {"temperature": 300, "steps": 20, "coordination_terms": [t.model_dump() for t in terms],
                        "cv_change_fraction": -0.1, "force_constant_ev": 0.5, "trajectory_stride": 10}, tmp_path)
    assert result.status == "ok", result.reason
    assert colvars_start(tmp_path) == pytest.approx(expected, rel=1e-4)
    centre = [line for line in (tmp_path / "restraint.colvars").read_text().splitlines() if "centers" in line]
    assert float(centre[0].split()[1]) == pytest.approx(expected)


def test_signed_coordination_cv_with_overlapping_groups(tmp_path):
    """CN_AB - CN_AC with A and B overlapping, R0 per term: Colvars (on the split groups), our CV and a
    plain double sum over i in A, j in B, j != i all agree."""
    atoms = build.rattled(build.bcc_bulk(3.51, 2), 0.08, 5)
    a, b, c = list(range(1, 9)), list(range(5, 13)), list(range(12, 17))  # LAMMPS ids
    terms = [{"group_a": {"ids": a}, "group_b": {"ids": b}, "r0_angstrom": 3.2},
             {"group_a": {"ids": a}, "group_b": {"ids": c}, "r0_angstrom": 4.0, "coefficient": -1.0}]
    from ase.geometry import get_distances

    _, distance = get_distances(atoms.positions, cell=atoms.cell, pbc=True)

    def direct(first, second, r0):
        return sum((1 - (distance[i - 1, j - 1] / r0) ** 6) / (1 - (distance[i - 1, j - 1] / r0) ** 12)
                   for i in first for j in second if j != i)

    expected = direct(a, b, 3.2) - direct(a, c, 4.0)
    assert coordination_cv(atoms, [CoordinationTerm(**t) for t in terms]) == pytest.approx(expected, rel=1e-9)
    result = md.run_md(atoms, md.Potential("meam"), "moving_restraint",
                       {"temperature": 300, "steps": 20, "coordination_terms": terms, "cv_end": expected + 1.0,
                        "force_constant_ev": 1.0, "trajectory_stride": 10}, tmp_path)
    assert result.status == "ok", result.reason
    assert colvars_start(tmp_path) == pytest.approx(expected, rel=1e-4)


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


def test_a_launcher_that_starts_separate_copies_runs_nothing(tmp_path):
    """Two 1-rank copies (srun without PMI) would each run the whole MD into one directory."""
    launcher = "sh -c '\"$@\" & \"$@\"; wait' {ranks}-copies"  # two copies, each its own MPI world
    result = md.run_md(build.bcc_bulk(3.51, 2), md.Potential("snap"), "nvt",
                       {"temperature": 300, "steps": 10, "mpi_ranks": 2, "mpi_launcher": launcher}, tmp_path)
    assert result.status == "failed" and "not of the 2 ranks asked for" in result.reason
    assert not (tmp_path / "thermo.csv").exists() and not (tmp_path / "log.lammps").exists()


def test_cavity_healing_starts_from_rest(tmp_path):
    """The study's cavity runs start at 0 K and the thermostat heats them (their energy rises
    over the first ps); plain NVT starts at its temperature."""
    atoms = build.cavity_crystal((7.0, 7.0, 7.0), 4, 3.51)

    def first_frame_temperature(protocol: str) -> float:
        frames = []
        md.run_md(atoms, md.Potential("meam"), protocol, {"temperature": 300, "steps": 2, "trajectory_stride": 2},
                  tmp_path / protocol, callbacks=[frames.append])
        velocities = frames[0].velocities  # Å/ps
        kinetic_ev = 0.5 * 6.94 * 1.0364e-4 * (velocities ** 2).sum()  # amu Å²/ps² -> eV
        return 2 * kinetic_ev / (3 * (len(velocities) - 1) * 8.617e-5)

    assert first_frame_temperature("cavity_healing") < 10
    assert first_frame_temperature("nvt") > 150
