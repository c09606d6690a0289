"""Field plug-ins checked against exact answers, against LAMMPS' own computes, and against
themselves replayed over a saved trajectory."""

import numpy as np
import pytest

from tasks import analyze, build, md
from tasks.fields import FIELDS, FieldStream, SlabGrid, make_fields
from tasks.fields.base import FrameCache
from tasks.fields.cavity import Cavity, enclosed_voids
from tasks.fields.coordination import coordination_numbers
from tasks.fields.deposit_geometry import classify_morphology
from tasks.fields.slab_temperature import AMU_A2_PS2_TO_EV, BOLTZMANN_EV_PER_K, slab_temperature_of
from tasks.fields.structure_fractions import structure_types
from tasks.frame import Frame, frame_to_atoms
from tasks.runtime import new_lammps

LI_MASS = 6.94


def frame_from(atoms, velocities=None, fixed=None, time_ps=0.0, potential_energy=None) -> Frame:
    n = len(atoms)
    return Frame(step=0, time_ps=time_ps, ids=np.arange(1, n + 1), types=np.zeros(n, dtype=int),
                 positions=atoms.positions.copy(),
                 velocities=np.zeros((n, 3)) if velocities is None else velocities,
                 potential_energy=np.zeros(n) if potential_energy is None else potential_energy,
                 masses=np.full(n, LI_MASS), fixed=np.zeros(n, dtype=bool) if fixed is None else fixed,
                 box_lo=np.zeros(3), box_hi=atoms.cell.lengths().copy())


def maxwell_boltzmann(n, temperature, rng):
    sigma = np.sqrt(BOLTZMANN_EV_PER_K * temperature / (LI_MASS * AMU_A2_PS2_TO_EV))  # Å/ps
    return rng.normal(0.0, sigma, (n, 3))


@pytest.fixture(scope="module")
def hot_slab_frame():
    atoms = build.bcc_bulk(3.51, (24, 24, 12))  # 13,824 atoms, 42 Å tall: ~3,500 per 10 Å slab, T noise ~1.4 %
    rng = np.random.default_rng(4)
    velocities = maxwell_boltzmann(len(atoms), 300.0, rng)
    slab = np.floor(atoms.positions[:, 2] / 10.0).astype(int)
    drift = np.array([[5.0, -3.0, 8.0], [0, 0, 0], [-10.0, 2.0, 0.0], [1.0, 1.0, 1.0], [0, 0, 0]])  # Å/ps
    velocities += drift[slab]
    return atoms, frame_from(atoms, velocities)


def test_slab_temperature_removes_drift(hot_slab_frame):
    _, frame = hot_slab_frame
    grid = SlabGrid(0.0, 40.0, 10.0)
    temperature, counts = slab_temperature_of(frame, grid)
    assert counts.sum() == np.sum(frame.positions[:, 2] < 40.0)
    assert np.all(np.abs(temperature - 300.0) < 0.03 * 300.0)
    raw = 0.5 * LI_MASS * AMU_A2_PS2_TO_EV * np.sum(frame.velocities[frame.positions[:, 2] < 10] ** 2)
    assert raw / (1.5 * counts[0] * BOLTZMANN_EV_PER_K) > 1.1 * temperature[0]  # the drift was real heat


def test_slab_temperature_matches_lammps_temp_chunk(hot_slab_frame, tmp_path):
    atoms, frame = hot_slab_frame
    from ase.io import write

    with_velocities = frame_to_atoms(frame, ["Li"])
    write(tmp_path / "frame.data", with_velocities, format="lammps-data", specorder=["Li"], masses=True,
          velocities=True, units="metal")
    lmp = new_lammps()
    lmp.commands_string(f"""
        units metal
        atom_style atomic
        read_data {tmp_path / 'frame.data'}
        mass 1 {LI_MASS}
        pair_style zero 3.0
        pair_coeff * *
        compute slabs all chunk/atom bin/1d z lower 10.0 units box
        compute slab_temperature all temp/chunk slabs temp com yes cdof -3
        fix out all ave/time 1 1 1 c_slab_temperature[1] mode vector file {tmp_path / 'chunks.txt'}
        run 0
    """)
    lmp.close()
    lammps_values = np.loadtxt(tmp_path / "chunks.txt", skiprows=4)[:, 1]
    ours, counts = slab_temperature_of(frame, SlabGrid(0.0, 50.0, 10.0))
    populated = counts[: len(lammps_values)] >= 2
    assert populated.sum() >= 4
    np.testing.assert_allclose(ours[: len(lammps_values)][populated], lammps_values[populated], rtol=1e-3)


def test_fixed_atoms_excluded_and_empty_slabs_nan():
    atoms = build.slab((1, 0, 0), 6, (4, 4), 20.0, fixed_layers=2)
    rng = np.random.default_rng(1)
    velocities = maxwell_boltzmann(len(atoms), 300.0, rng)
    velocities[atoms.arrays["fixed"]] = 0.0
    frame = frame_from(atoms, velocities, atoms.arrays["fixed"])
    temperature, counts = slab_temperature_of(frame, SlabGrid(0.0, atoms.cell[2, 2], 4.0))
    assert counts.sum() == (~atoms.arrays["fixed"]).sum()
    assert np.isnan(temperature[0])  # vacuum below the slab
    assert np.isnan(temperature[-1])  # vacuum above


def perfect_bcc_frame():
    return frame_from(build.bcc_bulk(3.51, 6))


def liquid_like_frame():
    return frame_from(build.random_cluster(432, 0.534, seed=2, min_distance_angstrom=2.4))


def test_coordination_of_bcc_is_eight():
    frame = perfect_bcc_frame()
    cn = coordination_numbers(FrameCache(frame), cutoff=3.2, periodic_z=True)  # between 3.04 and 3.51 Å
    assert np.all(cn == 8)


def test_structure_fractions_bcc_and_liquid():
    assert np.all(structure_types(FrameCache(perfect_bcc_frame()), periodic_z=True) == 0)
    liquid = structure_types(FrameCache(liquid_like_frame()), periodic_z=True)
    assert np.mean(liquid == 0) < 0.1


def neighbour_test_frames():
    """Crystals, a liquid, tiny periodic cells (images are neighbours) and open slabs with vapour
    atoms (their nearest neighbours lie beyond the cell list's reach)."""
    from ase.build import bulk

    fcc = bulk("Cu", "fcc", a=4.4, cubic=True).repeat(4)
    hcp = bulk("Mg", "hcp", a=3.1, c=5.06, orthorhombic=True).repeat((4, 3, 3))
    cases = [(build.bcc_bulk(3.51, 6), True), (build.rattled(build.bcc_bulk(3.51, 6), 0.25, 2), True),
             (build.rattled(build.bcc_bulk(3.51, 2), 0.05, 2), True), (fcc, True),
             (build.rattled(fcc, 0.08, 3), True), (build.rattled(hcp, 0.05, 4), True),
             (build.random_cluster(432, 0.534, seed=2, min_distance_angstrom=2.4), True)]
    for miller, size in (((1, 0, 0), (5, 5)), ((1, 1, 0), (4, 4)), ((1, 1, 1), (3, 4))):
        slab = build.rattled(build.slab(miller, 8, size, 20.0), 0.15, 1)
        slab.positions[:5, 2] += np.linspace(8.0, 30.0, 5)  # atoms in flight above the surface
        cases.append((slab, False))
    return [(frame_from(atoms), periodic_z) for atoms, periodic_z in cases]


def test_neighbour_kernels_give_ovitos_counts_and_types():
    """Our cell-list coordination and a-CNA against OVITO's modifiers, atom by atom."""
    from tasks.fields.base import ovito_collection, ovito_modifiers
    from tasks.fields.neighbours import from_ovito_types

    modifiers = ovito_modifiers()
    seen = set()
    for frame, periodic_z in neighbour_test_frames():
        data = ovito_collection(frame, periodic_z)
        data.apply(modifiers.CoordinationAnalysisModifier(cutoff=3.2, number_of_bins=2))
        data.apply(modifiers.CommonNeighborAnalysisModifier())
        ovito_types = from_ovito_types()[np.asarray(data.particles["Structure Type"][...])]
        assert np.array_equal(coordination_numbers(FrameCache(frame), 3.2, periodic_z),
                              data.particles["Coordination"][...])
        assert np.array_equal(structure_types(FrameCache(frame), periodic_z), ovito_types)
        seen.update(ovito_types.tolist())
    assert seen == {0, 1, 2, 3}  # every structure type was met


def test_neighbour_kernels_from_two_threads_at_once():
    from concurrent.futures import ThreadPoolExecutor

    frames = [frame for frame, periodic_z in neighbour_test_frames() if periodic_z]
    alone = [structure_types(FrameCache(frame), True) for frame in frames]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda frame: structure_types(FrameCache(frame), True), frames * 2))
    assert all(np.array_equal(a, b) for a, b in zip(alone * 2, together))


def test_rdf_is_the_exact_pair_histogram():
    """Against a plain pair count (a KD-tree, every pair within r_max) on an open slab and a bulk."""
    from scipy.spatial import cKDTree

    for atoms, periodic_z in ((build.rattled(build.slab((1, 0, 0), 8, (5, 5), 20.0), 0.1, 1), False),
                              (build.rattled(build.bcc_bulk(3.51, 5), 0.1, 2), True)):
        frame = frame_from(atoms)
        dataset = analyze.analyze_frames([frame], [("rdf", {"r_max_angstrom": 7.0, "bin_width_angstrom": 0.1})],
                                         periodic_z)
        lengths = atoms.cell.lengths()
        box = lengths if periodic_z else np.array([lengths[0], lengths[1], 1e4])
        tree = cKDTree(np.mod(atoms.positions, box), boxsize=box)
        distances = tree.sparse_distance_matrix(tree, 7.0, output_type="ndarray")["v"]
        edges = np.linspace(0, 7.0, 71)
        pairs = np.histogram(distances[distances > 1e-8], bins=edges)[0]
        shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
        expected = pairs / (len(atoms) * len(atoms) / np.prod(lengths) * shell)
        np.testing.assert_allclose(dataset.rdf.values, expected, rtol=1e-6, atol=1e-9)


def test_rdf_of_bcc_has_first_shell_at_sqrt3_over_2_a():
    dataset = analyze.analyze_frames([perfect_bcc_frame()], [("rdf", {"r_max_angstrom": 6.0,
                                                                       "bin_width_angstrom": 0.02})], True)
    rdf = dataset.rdf
    assert float(rdf.idxmax("r")) == pytest.approx(3.51 * np.sqrt(3) / 2, abs=0.03)
    assert float(rdf.sel(r=slice(0, 2.5)).max()) == 0.0


def test_msd_recovers_planted_diffusion():
    rng = np.random.default_rng(7)
    n_atoms, n_frames, dt, diffusion = 400, 400, 0.1, 0.25  # Å²/ps
    steps = rng.normal(0.0, np.sqrt(2 * diffusion * dt), (n_frames, n_atoms, 3))
    trajectory = np.cumsum(steps, axis=0)
    frames = []
    for t in range(n_frames):
        frames.append(Frame(step=t, time_ps=t * dt, ids=np.arange(1, n_atoms + 1), types=np.zeros(n_atoms, int),
                            positions=trajectory[t], velocities=np.zeros((n_atoms, 3)),
                            potential_energy=np.zeros(n_atoms), masses=np.full(n_atoms, LI_MASS),
                            fixed=np.zeros(n_atoms, bool), box_lo=np.zeros(3), box_hi=np.full(3, 50.0)))
    everything = {"surface_depth_angstrom": 1e6, "fit_window": (0.0, 0.3)}  # every atom is "surface"
    dataset = analyze.analyze_frames(frames, [("msd", everything)], True)
    fitted, error = (float(dataset[v].sel(group="surface")) for v in ("diffusion_coefficient",
                                                                        "diffusion_coefficient_stderr"))
    assert fitted == pytest.approx(diffusion, rel=0.05)
    assert 0 < error < 0.05 * diffusion
    assert np.isnan(float(dataset.diffusion_coefficient.sel(group="bulk")))  # an empty group has no D
    direct = np.mean(np.sum((trajectory[10:] - trajectory[:-10]) ** 2, axis=2))
    assert float(dataset.msd.sel(group="surface").isel(lag=10)) == pytest.approx(direct, rel=1e-9)


def test_msd_exact_at_large_coordinates():
    """Displacements of 0.01 Å at 350 Å from the origin: float64 round-off must not show."""
    rng = np.random.default_rng(3)
    positions = 350.0 + np.cumsum(rng.normal(0, 0.01, (50, 200, 3)), axis=0)
    direct = np.array([np.mean(np.sum((positions[k:] - positions[:len(positions) - k]) ** 2, axis=2))
                       for k in range(len(positions))])
    from tasks.fields.msd import msd_fft

    np.testing.assert_allclose(msd_fft(positions)[1:], direct[1:], rtol=1e-9)


def test_morphology_thresholds():
    assert classify_morphology(1.0, 10, 10) == "flat"
    assert classify_morphology(30.0, 10, 10) == "needle"
    assert classify_morphology(10.0, 10, 20) == "mushroom"
    assert classify_morphology(10.0, 20, 12) == "hemisphere"


def test_deposit_geometry_of_a_column_and_atoms_in_flight():
    substrate = build.slab((1, 0, 0), 4, (10, 10), 30.0)
    column = build.column_on_substrate("circular", "100", width_angstrom=10.0, height_angstrom=28.0,
                                       substrate_size=(10, 10), substrate_layers=4, fixed_layers=0,
                                       vacuum_angstrom=30.0)
    falling = column.copy()
    falling.append("Li")
    falling.positions[-1] = [3.0, 3.0, column.positions[:, 2].max() + 12.0]  # in flight, far above the tip
    frames = [frame_from(substrate), frame_from(column, time_ps=1.0), frame_from(falling, time_ps=2.0)]
    dataset = analyze.analyze_frames(frames, [("deposit_geometry", {"grid_spacing_angstrom": 1.0})], False)
    assert float(dataset.deposit_height[1]) == pytest.approx(28.0 - 1.755, abs=2.0)
    assert float(dataset.deposit_bottom_diameter[1]) == pytest.approx(10.0, rel=0.35)
    assert str(dataset.morphology.values[1]) == "needle"
    assert float(dataset.deposit_height[2]) == float(dataset.deposit_height[1])  # the falling atom is not the tip
    assert float(dataset.substrate_top) == pytest.approx(substrate.positions[:, 2].max())


def test_stream_of_a_run_equals_its_trajectory_replayed(tmp_path):
    """The fields a run streams are the fields of its saved frames computed afterwards, and the
    dataset has exactly the layout the fields declared before the run (`run_shape`)."""
    atoms = build.rattled(build.bcc_bulk(3.51, 4), 0.05, 1)
    params = {"temperature": 300.0, "steps": 200, "trajectory_stride": 20}
    names = ["slab_temperature", "coordination", "structure_fractions", "msd", "rdf", "potential_energy"]
    shape = analyze.run_shape(atoms, "nvt", params)
    stream = FieldStream(make_fields(analyze.field_specs(names), shape), shape)
    result = md.run_md(atoms, md.Potential("meam"), "nvt", params, tmp_path, callbacks=[stream],
                       save_trajectory=True)
    assert result.status == "ok" and stream.n_frames == shape.n_frames == 10
    streamed = stream.dataset()
    replayed = analyze.analyze_frames(md.load_trajectory(tmp_path / "trajectory"), names, periodic_z=True)
    assert set(streamed.data_vars) == set(replayed.data_vars) == {
        v for n in [*names, "n_atoms"] for v in FIELDS[n](shape).variables()}
    for name in streamed.data_vars:
        np.testing.assert_allclose(streamed[name].values, replayed[name].values, rtol=1e-6, equal_nan=True,
                                   err_msg=name)
    np.testing.assert_array_equal(streamed.time.values, [f.time_ps for f in md.load_trajectory(tmp_path /
                                                                                                "trajectory")])
    assert float(streamed.structure_fraction.sel(structure="bcc").mean()) > 0.5  # MEAM bulk at 300 K is bcc


def _empty_volume_by_sampling(atoms, probe: float, n: int, rng) -> float:
    """Monte Carlo volume of the points farther than `probe` from every atom and its periodic images."""
    lengths = atoms.cell.lengths()
    points = rng.uniform(0, 1, (n, 3)) * lengths
    nearest = np.full(n, np.inf)
    for shift in np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1])).T.reshape(-1, 3):
        images = atoms.positions + shift * lengths
        for chunk in range(0, n, 2000):
            d = np.linalg.norm(points[chunk:chunk + 2000, None, :] - images[None], axis=2).min(axis=1)
            nearest[chunk:chunk + 2000] = np.minimum(nearest[chunk:chunk + 2000], d)
    return float((nearest > probe).mean() * np.prod(lengths))


def test_cavity_volume_counts_enclosed_voids_only():
    """A cavity's volume is what a probe can reach (checked against brute-force sampling); a
    thermal crystal has none; the vacuum above a slab spans the box and is not a cavity, while
    a cavity inside that slab still is."""
    rng = np.random.default_rng(3)
    crystal = build.cavity_crystal((10.5, 10.5, 10.5), 6, 3.51)
    volumes = enclosed_voids(crystal.positions, np.zeros(3), crystal.cell.lengths(), 2.5, 0.5)
    assert len(volumes) == 1
    assert volumes[0] == pytest.approx(_empty_volume_by_sampling(crystal, 2.5, 40_000, rng), rel=0.15)
    thermal = build.rattled(build.bcc_bulk(3.51, 6), 0.1, 5)
    assert len(enclosed_voids(thermal.positions, np.zeros(3), thermal.cell.lengths(), 2.5, 0.5)) == 0
    slab = build.slab((1, 0, 0), 8, (3, 3), 10.0, 0, 3.51)
    assert len(enclosed_voids(slab.positions, np.zeros(3), slab.cell.lengths(), 2.5, 0.5)) == 0
    in_slab = crystal.copy()
    in_slab.center(vacuum=10.0, axis=2)
    shape = analyze.shape_of_frames([frame_from(in_slab)], periodic_z=False)
    values = Cavity(shape).one_frame(frame_from(in_slab), FrameCache(frame_from(in_slab)))
    assert values["cavity_count"] == 1 and values["cavity_volume"] == pytest.approx(volumes[0], rel=0.05)
