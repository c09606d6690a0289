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


@pytest.fixture(scope="module")
def deposition_model(tmp_path_factory, reference_dataset):
    """A DeePMD model that has learnt adatom binding: more steps and an energy-weighted loss.

    It must reproduce SNAP's attraction of an adatom to a (100) surface, which the
    force-dominated 400-step test model does not: its binding curve is checked here.
    """
    from conftest import tiny_train_arguments
    from tasks import label, train

    arguments = {**tiny_train_arguments(), "steps": 2000, "decay_steps": 200,
                 "loss": {"start_pref_e": 1.0, "limit_pref_e": 1.0, "start_pref_f": 100.0, "limit_pref_f": 1.0,
                          "start_pref_v": 0.0, "limit_pref_v": 0.0}}
    record = train.train_member(tmp_path_factory.mktemp("deposition-model"), reference_dataset["train"],
                                reference_dataset["test"], seed=11, **arguments)
    heights = [1.8, 2.4, 4.0, 6.0]
    frames = [build.adatom_slab((1, 0, 0), "hollow", 4, (2, 2), 16.0, h) for h in heights]
    from deepmd.infer import DeepPot

    model = DeepPot(record.model_path)
    energies = [float(model.eval(f.positions.reshape(1, -1), f.cell.array.reshape(1, -1), [0] * len(f))[0].ravel()[0])
                for f in frames]
    snap = [label.label_one(f, "reference", {"potential": "snap"}, tmp_path_factory.mktemp("snap"), "a")[0].energy_ev
            for f in frames]
    assert snap[1] < snap[3] and energies[1] < energies[3], f"model must bind the adatom: {energies} vs SNAP {snap}"
    return record.model_path


@pytest.mark.slow
def test_deposition_with_deepmd_model(tmp_path, deposition_model):
    slab = build.slab((1, 0, 0), 8, (8, 8), vacuum_angstrom=10.0, fixed_layers=3)  # 512 atoms
    rate, duration = 5.0, 2.0
    frames = []
    temperatures = analyze.StreamingAnalysis([analyze.SlabTemperature(5.0)])
    result = md.run_md(slab, md.Potential("deepmd", [deposition_model]), "deposition",
                       {"temperature": 300, "rate": rate, "duration": duration, "falling_speed": 1500,
                        "insertion_height_angstrom": 6.0, "trajectory_stride": 100},
                       tmp_path, callbacks=[frames.append, temperatures])
    assert result.status == "ok", result.reason
    assert abs((result.n_atoms_end - result.n_atoms_start) - rate * duration) <= 1
    first, last = frames[0], frames[-1]
    fixed_before = first.positions[first.fixed]
    fixed_after = last.positions[np.isin(last.ids, first.ids[first.fixed])]
    assert np.abs(fixed_after - fixed_before).max() < 1e-9
    slab_top = slab.positions[:, 2].max()
    early = np.isin(last.ids, result.inserted_ids[:5])  # inserted at least 1 ps before the end, landed in 0.5 ps
    assert np.all(last.positions[early, 2] < slab_top + 4.0), "early deposited atoms must have landed"
    assert np.all(np.diff(result.inserted_time_ps) > 0)
    dataset = temperatures.result()
    assert np.nanmax(dataset.atoms_per_slab.values[-1]) > 0
