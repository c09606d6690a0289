"""The field store: allocation from declared layouts, concurrent writers of every dtype, partial
runs, growth in place, reductions, the notebook API."""

import hashlib
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from campaign.sweep import sweep_axes
from storage import StoreError, fields, open_campaign, reduce
from storage.api import write_campaign_record

SWEEP = {"temperature": [200, 300, 400], "zip": [{"rate": [1, 5, 20], "falling_speed": [1000, 5000, 20000]}]}
N_TIME = 100  # longer than one time chunk of a shard (64 frames)


def run_dataset(n_time: int, seed: int, n_z: int = 6, n_total: int = N_TIME) -> xr.Dataset:
    """One run's fields of every kind: float32, float64 and int32 time series, a text series, a profile
    without time, a scalar; time series padded to `n_total` as `FieldStream` declares them."""
    rng = np.random.default_rng(seed)
    temperature = np.full((n_total, n_z), np.nan, np.float32)
    temperature[:n_time] = rng.uniform(200, 800, (n_time, n_z))
    fractions = np.full((n_total, 4), np.nan)
    fractions[:n_time] = rng.dirichlet(np.ones(4), n_time)
    counts = np.zeros(n_total, np.int32)  # integer series pad with 0, as `Variable.fill` declares
    counts[:n_time] = rng.integers(0, 5, n_time)
    labels = np.full(n_total, "", dtype=object)
    labels[:n_time] = rng.choice(["flat", "needle", "hemisphere", "mushroom"], n_time)
    return xr.Dataset(
        {"slab_temperature": (("time", "z"), temperature, {"units": "K"}),
         "structure_fraction": (("time", "structure"), fractions, {"units": "1"}),
         "cavity_count": (("time",), counts, {"units": "1"}),
         "morphology": (("time",), labels, {"long_name": "needle / mushroom / hemisphere / flat"}),
         "rdf": (("r",), rng.uniform(0, 3, 40), {"units": "1"}),
         "substrate_top": ((), rng.uniform(10, 20), {"units": "angstrom"})},
        coords={"time": np.arange(1, n_total + 1) * 0.1, "z": 5.0 + 10.0 * np.arange(n_z),
                "structure": np.array(["bcc", "fcc", "hcp", "other"], dtype=object), "r": np.arange(40) * 0.2},
        attrs={"n_valid_time": n_time})


def template() -> xr.Dataset:
    empty = run_dataset(0, 0)
    return empty


def allocate(store: Path, replicas: int = 2, sweep=None) -> None:
    fields.allocate_study(store, "deposition", sweep_axes(sweep or SWEEP, replicas), template(),
                          attrs={"config_hash": "abc"})


def point(temperature, rate, replica=0) -> dict:
    return {"temperature": temperature, "rate": rate, "replica": replica}


def test_allocation_layout_one_run_per_chunk_for_every_variable(tmp_path):
    store = tmp_path / "fields.zarr"
    allocate(store)
    data = fields.open_study(store, "deposition")
    assert dict(data.run_status.sizes) == {"temperature": 3, "rate": 3, "replica": 2}
    assert data.sizes["time"] == N_TIME and data.sizes["z"] == 6
    assert list(data.falling_speed.dims) == ["rate"]  # zipped: a coordinate, no extra dimension
    assert int(data.run_status.sum()) == 0 and np.isnan(data.slab_temperature.values).all()
    assert data.attrs["schema_version"] == fields.SCHEMA_VERSION and data.attrs["config_hash"] == "abc"
    assert data.attrs["Conventions"].startswith("CF-")
    group = zarr.open_group(str(store), mode="r")["deposition"]
    for name in [*template().data_vars, *fields.PER_RUN]:
        array = group[name]  # one run per chunk, one chunk per run, whatever the dtype
        assert array.chunks == (1, 1, 1) + array.shape[3:] and array.shards is None, name


def test_runs_chunks_are_what_zarr_itself_writes(tmp_path):
    """`RunWriter` puts numeric chunks in place without zarr's write path: byte for byte what
    zarr writes for the same values, padding included."""
    ours, theirs = tmp_path / "ours.zarr", tmp_path / "theirs.zarr"
    allocate(ours)
    allocate(theirs)
    run = run_dataset(70, 3)
    fields.write_run(ours, "deposition", point(300, 5, 1), run)
    group = zarr.open_group(str(theirs), mode="r+")["deposition"]
    for name in ("slab_temperature", "structure_fraction", "rdf", "substrate_top"):
        group[name][1, 1, 1] = run[name].values
    group["run_status"][1, 1, 1] = fields.RUN_COMPLETE
    group["n_valid_time"][1, 1, 1] = 70
    for name in ("slab_temperature", "structure_fraction", "rdf", "substrate_top", "run_status", "n_valid_time"):
        (chunk,) = (theirs / "deposition" / name).glob("c.*")
        assert (ours / chunk.relative_to(theirs)).read_bytes() == chunk.read_bytes(), name


def _write_worker(arguments):
    store, coordinates, seed, n_time = arguments
    fields.write_run(store, "deposition", coordinates, run_dataset(n_time, seed), provenance={"seed": seed})


def test_concurrent_writers_of_every_kind_of_field_bit_for_bit(tmp_path):
    """Eight processes write eight runs of one study at once, twenty times over; every run reads
    back exactly, text and provenance included (a shared chunk loses values under such writes)."""
    points = [point(t, r, k) for t in (200, 400) for r in (1, 20) for k in (0, 1)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        for repetition in range(20):
            store = tmp_path / f"r{repetition}" / "fields.zarr"
            allocate(store)
            jobs = [(store, p, 100 * repetition + k, 60 + k) for k, p in enumerate(points)]
            pool.map(_write_worker, jobs)
            data = fields.open_study(store, "deposition").compute()
            for _, coordinates, seed, n_time in jobs:
                written, expected = data.sel(**coordinates), run_dataset(n_time, seed)
                for name in expected.data_vars:
                    np.testing.assert_array_equal(written[name].values.astype(expected[name].dtype),
                                                  expected[name].values, err_msg=name)
                assert int(written.run_status) == fields.RUN_COMPLETE and int(written.n_valid_time) == n_time
                assert f'"seed": {seed}' in str(written.provenance.values)
            assert int((data.run_status == fields.RUN_COMPLETE).sum()) == len(points)


def test_a_running_run_is_readable_and_partial(tmp_path):
    """What a notebook sees while a study runs: finished runs complete, a running one partial
    (its frames so far), the rest missing."""
    store = tmp_path / "fields.zarr"
    allocate(store)
    fields.write_run(store, "deposition", point(200, 1), run_dataset(N_TIME, 1))
    running = fields.RunWriter(store, "deposition", point(300, 5))
    series = run_dataset(N_TIME, 2)
    running.partial({"slab_temperature": series.slab_temperature.values[:70]}, 70)
    data = fields.open_study(store, "deposition")
    assert int(data.run_status.sel(point(200, 1))) == fields.RUN_COMPLETE
    now = data.sel(point(300, 5))
    assert int(now.run_status) == fields.RUN_RUNNING and int(now.n_valid_time) == 70
    np.testing.assert_array_equal(now.slab_temperature.values[:70], series.slab_temperature.values[:70])
    assert np.isnan(now.slab_temperature.values[70:]).all()
    assert int(data.run_status.sel(point(400, 20))) == fields.RUN_MISSING
    assert np.isnan(fields.complete_runs(data).slab_temperature.sel(point(300, 5)).values).all()
    running.final({n: v.values for n, v in series.data_vars.items()}, True, N_TIME, {"task_id": "t"})
    assert int(fields.open_study(store, "deposition").run_status.sel(point(300, 5))) == fields.RUN_COMPLETE


def shard_digests(store: Path) -> dict[str, str]:
    """Digests of the runs' chunk files (the sweep coordinates themselves grow, of course)."""
    variables = [*template().data_vars, *fields.PER_RUN]
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for name in variables for p in (store / "deposition" / name).glob("c.*")}


def test_adding_sweep_values_grows_the_study_in_place(tmp_path):
    store = tmp_path / "fields.zarr"
    allocate(store, replicas=1, sweep={"temperature": [200, 300]})
    for k, temperature in enumerate((200, 300)):
        fields.write_run(store, "deposition", {"temperature": temperature, "replica": 0}, run_dataset(N_TIME, k))
    before = shard_digests(store)
    allocation = fields.allocate_study(store, "deposition", sweep_axes({"temperature": [200, 250, 300]}, 2),
                                       template())
    assert allocation.added == {"temperature": [250], "replica": [1]}
    after = shard_digests(store)
    assert {k: after[k] for k in before} == before  # the chunks of the runs that exist: byte-identical
    data = fields.open_study(store, "deposition")
    assert data.temperature.values.tolist() == [200, 300, 250]  # new values are appended, never inserted
    assert data.run_status.values.tolist() == [[1, 0], [1, 0], [0, 0]]
    fields.write_run(store, "deposition", {"temperature": 250, "replica": 1}, run_dataset(N_TIME, 7))
    data = fields.open_study(store, "deposition").sortby("temperature")
    np.testing.assert_array_equal(data.rdf.sel(temperature=250, replica=1).values, run_dataset(N_TIME, 7).rdf.values)
    np.testing.assert_array_equal(data.rdf.sel(temperature=200, replica=0).values, run_dataset(N_TIME, 0).rdf.values)


def test_a_changed_field_layout_is_refused_with_the_reason(tmp_path):
    store = tmp_path / "fields.zarr"
    allocate(store)
    longer = run_dataset(0, 0, n_total=N_TIME + 10)
    with pytest.raises(StoreError, match="another field layout .*slab_temperature"):
        fields.allocate_study(store, "deposition", sweep_axes(SWEEP, 2), longer)
    more = template().assign(n_atoms=(("time",), np.zeros(N_TIME, np.float32)))  # a field added: its arrays
    assert fields.allocate_study(store, "deposition", sweep_axes(SWEEP, 2), more).new_variables == ["n_atoms"]
    assert np.isnan(fields.open_study(store, "deposition").n_atoms.values).all()
    with pytest.raises(StoreError, match="sweep dimensions"):
        fields.allocate_study(store, "deposition", sweep_axes({"pressure": [0, 1]}, 2), template())
    conflicting = {"temperature": [200], "zip": [{"rate": [1], "falling_speed": [999]}]}
    with pytest.raises(StoreError, match="falling_speed"):
        fields.allocate_study(store, "deposition", sweep_axes(conflicting, 2), template())


def test_a_run_outside_the_sweep_and_a_wrong_shape_are_refused(tmp_path):
    store = tmp_path / "fields.zarr"
    allocate(store)
    with pytest.raises(StoreError, match="temperature=250"):
        fields.write_run(store, "deposition", point(250, 1), run_dataset(N_TIME, 0))
    writer = fields.RunWriter(store, "deposition", point(200, 1))
    with pytest.raises(StoreError, match="shape"):
        writer.write({"rdf": np.zeros(41)}, fields.RUN_COMPLETE, 0)
    with pytest.raises(StoreError, match="shape"):
        writer.write({"slab_temperature": np.zeros((10, 6, 1))}, fields.RUN_COMPLETE, 0)
    writer.write({"slab_temperature": np.ones((10, 4))}, fields.RUN_COMPLETE, 10)  # a smaller box: fewer slabs
    written = fields.open_study(store, "deposition").slab_temperature.sel(point(200, 1)).values
    assert np.all(written[:10, :4] == 1) and np.isnan(written[:10, 4:]).all() and np.isnan(written[10:]).all()
    with pytest.raises(StoreError, match="not allocated"):
        writer.write({"msd": np.zeros(3)}, fields.RUN_COMPLETE, 0)


def test_mean_profile_of_each_runs_own_steady_state(tmp_path):
    """Replica means of the last 20 % of each run's own frames (runs shorter than the study's time
    axis are never averaged over their padding), against numpy."""
    store = tmp_path / "fields.zarr"
    allocate(store)
    expected = np.zeros((3, 3, 6))
    for i, temperature in enumerate(SWEEP["temperature"]):
        for j, rate in enumerate(SWEEP["zip"][0]["rate"]):
            runs = []
            for replica in range(2):
                n_time = 50 + 10 * replica
                run = run_dataset(n_time, 1000 + 10 * i + 3 * j + replica)
                fields.write_run(store, "deposition", point(temperature, rate, replica), run)
                runs.append(run.slab_temperature.values[n_time - round(0.2 * n_time):n_time].mean(axis=0))
            expected[i, j] = np.mean(runs, axis=0)
    data = fields.open_study(store, "deposition")
    steady = reduce.steady_state(data.slab_temperature, data.n_valid_time, 0.2)
    profile = reduce.replica_mean(steady.mean("time")).compute()
    assert profile.dims == ("temperature", "rate", "z")
    np.testing.assert_allclose(profile.values, expected, rtol=1e-6)
    by_temperature = reduce.group_mean(profile, "temperature", keep=("z",)).compute()
    assert by_temperature.dims == ("temperature", "z")
    np.testing.assert_allclose(by_temperature.values, expected.mean(axis=1), rtol=1e-6)


def test_arrhenius_fit_recovers_barrier():
    temperature = np.array([300.0, 400.0, 500.0, 600.0])
    diffusion = 2.0 * np.exp(-0.15 / (reduce.BOLTZMANN_EV_PER_K * temperature))
    prefactor, barrier = reduce.arrhenius_fit(temperature, diffusion)
    assert barrier == pytest.approx(0.15) and prefactor == pytest.approx(2.0)


def test_bad_stores_give_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="no field store"):
        fields.open_study(tmp_path / "absent.zarr", "deposition")
    allocate(tmp_path / "fields.zarr")
    with pytest.raises(StoreError, match="no study 'melting'"):
        fields.open_study(tmp_path / "fields.zarr", "melting")
    zarr.open_group(str(tmp_path / "fields.zarr"), mode="a").attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="schema version 99"):
        fields.open_study(tmp_path / "fields.zarr", "deposition")


def test_notebook_api_and_plots(tmp_path):
    store = tmp_path / "fields.zarr"
    allocate(store)
    for k, temperature in enumerate(SWEEP["temperature"]):
        fields.write_run(store, "deposition", point(temperature, 5), run_dataset(N_TIME, k),
                         provenance={"task_id": f"t{k}", "host": "here"})
    write_campaign_record(tmp_path, "c", store, "abc")
    campaign = open_campaign(tmp_path)
    assert campaign.studies() == ["deposition"]
    data = campaign.fields("deposition")
    assert int(np.isfinite(data.slab_temperature.isel(time=0, z=0)).sum()) == 3
    assert campaign.labels().empty
    table = campaign.provenance("deposition")
    assert table.task_id.tolist() == ["t0", "t1", "t2"] and set(table.status) == {"ok"}
    lines = {line.get_label(): line for line in campaign.plot.temperature_profile("deposition").get_lines()}
    for k, temperature in enumerate(SWEEP["temperature"]):  # each written run is its last 20 % averaged
        expected = run_dataset(N_TIME, k).slab_temperature.isel(time=slice(80, 100)).mean("time")
        line = lines[f"temperature={temperature}, rate=5"]
        np.testing.assert_allclose(line.get_xdata(), expected.values, rtol=1e-6)  # temperature on x, height on y
        np.testing.assert_allclose(line.get_ydata(), expected.z.values)
    assert np.all(np.isnan(lines["temperature=200, rate=1"].get_xdata()))  # a run never written is no line
    bcc = {line.get_label(): line for line in campaign.plot.phase_fractions("deposition").get_lines()}
    np.testing.assert_allclose(bcc["temperature=300, rate=5"].get_ydata(),
                               run_dataset(N_TIME, 1).structure_fraction.sel(structure="bcc").values)
