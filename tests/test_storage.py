"""The field store: pre-allocation, concurrent region writes, reductions, the notebook API."""

import multiprocessing

import numpy as np
import pytest
import xarray as xr

from storage import StoreError, open_campaign
from campaign.sweep import sweep_axes
from storage import fields, reduce

SWEEP = {"temperature": [200, 300, 400], "zip": [{"rate": [1, 5, 20], "falling_speed": [1000, 5000, 20000]}]}


def run_dataset(n_time: int, seed: int, n_z: int = 6) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {"slab_temperature": (("time", "z"), rng.uniform(200, 800, (n_time, n_z)), {"units": "K"}),
         "structure_fraction": (("time", "structure"), rng.dirichlet(np.ones(4), n_time), {"units": "1"})},
        coords={"time": np.arange(1, n_time + 1) * 0.1, "z": 5.0 + 10.0 * np.arange(n_z),
                "structure": ["bcc", "fcc", "hcp", "other"]})


def allocate(tmp_path, replicas=2, n_time=20):
    axes = sweep_axes(SWEEP, replicas)
    fields.allocate_study(tmp_path / "fields.zarr", "deposition", axes, run_dataset(n_time, 0),
                          attrs={"config_hash": "abc"})
    return axes


def test_allocation_layout(tmp_path):
    axes = allocate(tmp_path)
    data = fields.open_study(tmp_path / "fields.zarr", "deposition")
    assert dict(data.sizes) == {"temperature": 3, "rate": 3, "replica": 2, "time": 20, "z": 6, "structure": 4}
    assert list(data.falling_speed.dims) == ["rate"]  # zipped: a coordinate, no extra dimension
    assert int(data.run_status.sum()) == 0
    assert np.isnan(data.slab_temperature.values).all()  # nothing written reads as NaN, never 0
    assert data.slab_temperature.encoding["chunks"][:3] == (1, 1, 1)
    assert data.attrs["schema_version"] == fields.SCHEMA_VERSION and data.attrs["config_hash"] == "abc"
    assert axes.region({"temperature": 300, "rate": 20, "falling_speed": 20000, "replica": 1}) == {
        "temperature": slice(1, 2), "rate": slice(2, 3), "replica": slice(1, 2)}


def _write_worker(arguments):
    store, parameters, seed, n_time = arguments
    axes = sweep_axes(SWEEP, 2)
    fields.write_run(store, "deposition", axes, parameters, run_dataset(n_time, seed))


def test_concurrent_writers_bit_for_bit(tmp_path):
    points = [{"temperature": 200, "rate": 1, "replica": 0}, {"temperature": 200, "rate": 1, "replica": 1},
              {"temperature": 300, "rate": 5, "replica": 0}, {"temperature": 400, "rate": 20, "replica": 1}]
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        for repetition in range(20):
            store = tmp_path / f"r{repetition}" / "fields.zarr"
            allocate(store.parent)
            jobs = [(store, p, 100 * repetition + k, 20) for k, p in enumerate(points)]
            pool.map(_write_worker, jobs)
            data = fields.open_study(store, "deposition").compute()
            for _, parameters, seed, _ in jobs:
                written = data.sel(**parameters)
                expected = run_dataset(20, seed)
                np.testing.assert_array_equal(written.slab_temperature.values, expected.slab_temperature.values)
                np.testing.assert_array_equal(written.structure_fraction.values, expected.structure_fraction.values)
                assert int(written.run_status) == fields.RUN_COMPLETE
            assert int((data.run_status == fields.RUN_COMPLETE).sum()) == 4


def test_shorter_run_is_padded_and_partial_is_missing(tmp_path):
    axes = allocate(tmp_path)
    store = tmp_path / "fields.zarr"
    fields.write_run(store, "deposition", axes, {"temperature": 200, "rate": 1, "replica": 0}, run_dataset(8, 1))
    data = fields.open_study(store, "deposition").sel(temperature=200, rate=1, replica=0)
    assert int(data.n_valid_time) == 8
    assert np.isfinite(data.slab_temperature.values[:8]).all() and np.isnan(data.slab_temperature.values[8:]).all()
    other = fields.open_study(store, "deposition").sel(temperature=300, rate=1, replica=0)
    assert int(other.run_status) == fields.RUN_MISSING and np.isnan(other.slab_temperature.values).all()


def test_new_run_visible_on_reopen_without_consolidating(tmp_path):
    axes = allocate(tmp_path)
    store = tmp_path / "fields.zarr"
    before = fields.open_study(store, "deposition")
    assert int(before.run_status.sum()) == 0
    fields.write_run(store, "deposition", axes, {"temperature": 400, "rate": 5, "replica": 0}, run_dataset(20, 3))
    after = fields.open_study(store, "deposition")
    assert int(after.run_status.sum()) == 1


def test_mean_profile_matches_numpy(tmp_path):
    axes = allocate(tmp_path)
    store = tmp_path / "fields.zarr"
    expected = np.zeros((3, 3, 6))
    for i, temperature in enumerate(SWEEP["temperature"]):
        for j, rate in enumerate(SWEEP["zip"][0]["rate"]):
            runs = []
            for replica in range(2):
                run = run_dataset(20, 1000 + 10 * i + 3 * j + replica)
                fields.write_run(store, "deposition", axes, {"temperature": temperature, "rate": rate,
                                                             "replica": replica}, run)
                runs.append(run.slab_temperature.values[-4:].mean(axis=0))
            expected[i, j] = np.mean(runs, axis=0)
    data = fields.open_study(store, "deposition")
    profile = reduce.replica_mean(reduce.last_fraction(data.slab_temperature, 0.2).mean("time")).compute()
    assert profile.dims == ("temperature", "rate", "z")
    np.testing.assert_allclose(profile.values, expected, rtol=1e-12)
    by_temperature = reduce.group_mean(profile, "temperature", keep=("z",)).compute()
    assert by_temperature.dims == ("temperature", "z")
    np.testing.assert_allclose(by_temperature.values, expected.mean(axis=1), rtol=1e-12)


def test_arrhenius_fit_recovers_barrier():
    temperature = np.array([300.0, 400.0, 500.0, 600.0])
    diffusion = 2.0 * np.exp(-0.15 / (reduce.BOLTZMANN_EV_PER_K * temperature))
    prefactor, barrier = reduce.arrhenius_fit(temperature, diffusion)
    assert barrier == pytest.approx(0.15) and prefactor == pytest.approx(2.0)


def test_bad_stores_give_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="no field store"):
        fields.open_study(tmp_path / "absent.zarr", "deposition")
    allocate(tmp_path)
    with pytest.raises(StoreError, match="no study 'melting'"):
        fields.open_study(tmp_path / "fields.zarr", "melting")
    import zarr

    zarr.open_group(str(tmp_path / "fields.zarr"), mode="a").attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="schema version 99"):
        fields.open_study(tmp_path / "fields.zarr", "deposition")
    axes = sweep_axes(SWEEP, 2)
    with pytest.raises(StoreError, match="another layout"):
        fields.allocate_study(tmp_path / "fields.zarr", "deposition", axes, run_dataset(30, 0))


def test_notebook_api_and_plots(tmp_path):
    axes = allocate(tmp_path)
    for k, temperature in enumerate(SWEEP["temperature"]):
        fields.write_run(tmp_path / "fields.zarr", "deposition", axes, {"temperature": temperature, "rate": 5, "replica": 0},
                         run_dataset(20, k))
    campaign = open_campaign(tmp_path)
    assert campaign.studies() == ["deposition"]
    data = campaign.fields("deposition")
    assert int(np.isfinite(data.slab_temperature.isel(time=0, z=0)).sum()) == 3
    assert campaign.labels().empty
    lines = {line.get_label(): line for line in campaign.plot.temperature_profile("deposition").get_lines()}
    for k, temperature in enumerate(SWEEP["temperature"]):  # each written run is its last 20 % averaged
        expected = run_dataset(20, k).slab_temperature.isel(time=slice(16, 20)).mean("time")
        line = lines[f"temperature={temperature}, rate=5"]
        np.testing.assert_allclose(line.get_xdata(), expected.values)  # temperature on x, height on y
        np.testing.assert_allclose(line.get_ydata(), expected.z.values)
    assert np.all(np.isnan(lines["temperature=200, rate=1"].get_xdata()))  # a run never written is no line
    bcc = {line.get_label(): line for line in campaign.plot.phase_fractions("deposition").get_lines()}
    np.testing.assert_allclose(bcc["temperature=300, rate=5"].get_ydata(),
                               run_dataset(20, 1).structure_fraction.sel(structure="bcc").values)


def test_same_shape_other_sweep_values_is_another_layout(tmp_path):
    axes = sweep_axes({"temperature": [200, 300]}, 1)
    fields.allocate_study(tmp_path / "fields.zarr", "deposition", axes, run_dataset(30, 0))
    fields.allocate_study(tmp_path / "fields.zarr", "deposition", axes, run_dataset(30, 0))  # same: no-op
    other = sweep_axes({"temperature": [200, 250]}, 1)
    with pytest.raises(StoreError, match="another layout"):
        fields.allocate_study(tmp_path / "fields.zarr", "deposition", other, run_dataset(30, 0))
