"""Selection of frames to label: trust levels, strategies, model-deviation files, cut-outs."""

import numpy as np
import pytest

from tasks import build, select


def test_classify_by_trust_levels():
    labels = select.classify(np.array([0.01, 0.05, 0.1, 0.3, np.nan]), lo=0.05, hi=0.3)
    assert labels.tolist() == ["accurate", "candidate", "candidate", "failed", "failed"]
    with pytest.raises(ValueError, match="lo < hi"):
        select.classify(np.array([0.1]), lo=0.3, hi=0.3)


def test_strategies_pick_at_most_n_deterministically():
    deviation = np.array([0.10, 0.25, 0.07, 0.22, 0.15])
    assert select.pick(deviation, 2, "highest_deviation", seed=0) == [1, 3]
    first = select.pick(deviation, 3, "random", seed=5)
    assert first == select.pick(deviation, 3, "random", seed=5) and len(set(first)) == 3
    assert select.pick(deviation, 10, "random", seed=1) == [0, 1, 2, 3, 4]
    assert select.pick(deviation, 0, "random", seed=1) == []


def test_farthest_point_covers_distinct_environments():
    # three tight clusters of descriptors; FPS must take one point from each, not three near-copies
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=float)
    points = np.concatenate([c + 0.01 * rng.standard_normal((5, 2)) for c in centres])
    deviation = np.linspace(0.1, 0.2, 15)[::-1]  # cluster 0 holds the most uncertain frames
    chosen = select.pick(deviation, 3, "farthest_point", seed=0, descriptors=points)
    assert sorted(index // 5 for index in chosen) == [0, 1, 2]
    assert select.pick(deviation, 3, "highest_deviation", seed=0) == [0, 1, 2]  # all from cluster 0
    with pytest.raises(ValueError, match="descriptor"):
        select.pick(deviation, 3, "farthest_point", seed=0)


def test_read_model_deviation(tmp_path):
    path = tmp_path / "model_devi.out"
    path.write_text("#       step         max_devi_v         min_devi_v         avg_devi_v         max_devi_f"
                    "         min_devi_f         avg_devi_f\n"
                    "0 1e-3 1e-4 5e-4 0.021 0.001 0.01\n100 1e-3 1e-4 5e-4 0.15 0.01 0.05\n")
    assert select.read_model_deviation(path) == {0: 0.021, 100: 0.15}
    with pytest.raises(FileNotFoundError):
        select.read_model_deviation(tmp_path / "missing.out")


def test_local_region_is_centred_on_the_most_uncertain_atom():
    atoms = build.bcc_bulk(3.51, 5)  # 250 atoms
    deviation = np.zeros(len(atoms))
    deviation[137] = 0.4
    region = select.local_region(atoms, deviation, 5.0)
    assert 20 < len(region) < 60 and 137 in region.info["source_indices"]
    assert region.info["max_atom_deviation_ev_per_angstrom"] == 0.4 and not region.pbc.any()


def test_descriptors_and_per_atom_deviation_from_real_models(tiny_ensemble):
    models = [m.model_path for m in tiny_ensemble]
    frames = [build.rattled(build.bcc_bulk(3.45, 2), 0.1, seed) for seed in range(3)]
    descriptors = select.frame_descriptors(models[0], frames, ["Li"])
    assert descriptors.shape[0] == 3 and np.all(np.isfinite(descriptors))
    assert not np.allclose(descriptors[0], descriptors[1])
    per_atom = select.per_atom_force_deviation(models, frames[0], ["Li"])
    assert per_atom.shape == (16,) and np.all(per_atom >= 0) and per_atom.max() > 0


def test_frames_with_atoms_too_close_are_found_across_periodic_images():
    """bcc Li's nearest neighbours are a√3/2 = 2.97 Å apart; an atom pushed to 1.2 Å of
    another, or a cell so small that an atom meets its own image, is too close."""
    atoms = build.bcc_bulk(3.43, 2)
    assert not select.too_close(atoms, 2.9) and select.too_close(atoms, 3.0)
    squeezed = atoms.copy()
    squeezed.positions[1] = squeezed.positions[0] + [0.7, 0.7, 0.7]
    assert select.too_close(squeezed, 1.5) and not select.too_close(atoms, 1.5)
    from ase import Atoms

    alone = Atoms("Li", cell=[1.4, 5.0, 5.0], pbc=True)
    assert select.too_close(alone, 1.5) and not select.too_close(alone, 1.3)
