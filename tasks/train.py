"""DeePMD-kit training (PyTorch backend), testing, compression and model deviation.

`train_member` trains one ensemble member in its own directory through DeePMD-kit's own
command line (`dp --pt train/freeze/test/compress`), so that what runs is exactly what a
user would run by hand, with its logs next to the model (the four commands in one process,
`tasks.dp_batch`, so DeePMD's imports are paid once). Members differ by seed; from
the second active-learning iteration on they start from the previous frozen model
(`--init-frz-model`), the transfer learning of the self-healing study.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from ase import Atoms

from tasks.atomic import write_json
from tasks.digest import json_digest
from tasks.label import label_names, read_labels
from tasks.runtime import child_environment, prepare_process


class TrainingError(RuntimeError):
    """`dp` failed; the message holds the command and the tail of its log."""


@dataclass
class ModelRecord:
    """A trained ensemble member: where it is and how good it is on held-out data."""

    model_path: str
    seed: int
    steps: int
    wall_time_s: float
    n_training_frames: int
    metrics: dict[str, float] = field(default_factory=dict)
    compressed_path: str | None = None
    init_model: str | None = None
    resumed_from_step: int | None = None  # the checkpoint an earlier, killed attempt left
    #: the most neighbours within the descriptor's cutoff any atom of its data has: DeePMD keeps
    #: the nearest `sel` and drops the rest without a word (an older record has none)
    max_neighbours: int | None = None
    max_three_body_neighbours: int | None = None  # within the se_e3 term's cutoff, where there is one


def deepmd_input(training_systems: Sequence[str], validation_systems: Sequence[str], type_map: Sequence[str],
                 seed: int, steps: int, descriptor: dict[str, Any], fitting_neuron: Sequence[int],
                 loss: dict[str, float], start_learning_rate: float = 1e-3, stop_learning_rate: float = 3.5e-8,
                 decay_steps: int = 500, system_weights: Mapping[str, float] | None = None,
                 **_: Any) -> dict[str, Any]:
    """DeePMD-kit `input.json` for an se_e2_a energy model (the seed studies' "DP-SE"), with an
    se_e3 term beside it (a `hybrid` descriptor) where `descriptor` has a `three_body`.

    `descriptor` uses our names with units (rcut_angstrom, rcut_smooth_angstrom); loss
    prefactors move from start to limit with the learning rate. Systems without virials
    simply contribute no virial loss (DeePMD-kit skips missing labels). `system_weights`
    draws some systems more often (`sampling_probabilities`); without it DeePMD draws each in
    proportion to its size.
    """
    disp = max(1, min(100, steps // 10))
    training_data: dict[str, Any] = {"systems": list(training_systems), "batch_size": "auto"}
    if system_weights and training_systems:
        training_data["sys_probs"] = sampling_probabilities(training_systems, system_weights)
    two_body = {"type": descriptor.get("type", "se_e2_a"), **_cutoffs(descriptor),
                "axis_neuron": descriptor["axis_neuron"], "resnet_dt": False, "seed": seed}
    three_body = descriptor.get("three_body")
    return {
        "model": {
            "type_map": list(type_map),
            "descriptor": two_body if not three_body else
            {"type": "hybrid", "list": [two_body, {"type": "se_e3", **_cutoffs(three_body), "resnet_dt": False,
                                                   "seed": seed}]},
            "fitting_net": {"neuron": list(fitting_neuron), "resnet_dt": True, "seed": seed},
        },
        "learning_rate": {"type": "exp", "start_lr": start_learning_rate, "stop_lr": stop_learning_rate,
                          "decay_steps": min(decay_steps, steps)},
        "loss": {"type": "ener", **loss},
        "training": {
            "training_data": training_data,
            **({"validation_data": {"systems": list(validation_systems), "batch_size": "auto", "numb_btch": 1}}
               if validation_systems else {}),
            "numb_steps": steps,
            "seed": seed,
            "disp_file": "lcurve.out",
            "disp_freq": disp,
            "save_freq": max(disp, steps // 20),  # a member killed with its block resumes from here
        },
    }


def _cutoffs(descriptor: Mapping[str, Any]) -> dict[str, Any]:
    """A DeePMD descriptor's cutoffs, neighbour counts and embedding net from ours (units in names)."""
    return {"rcut": descriptor["rcut_angstrom"], "rcut_smth": descriptor["rcut_smooth_angstrom"],
            "sel": list(descriptor["sel"]), "neuron": list(descriptor["neuron"])}


def sampling_probabilities(training_systems: Sequence[str], system_weights: Mapping[str, float]) -> list[float]:
    """DeePMD's `sys_probs`: each system drawn in proportion to its frames times the weight of the
    first pattern of `system_weights` (fnmatch, in order) that one of its label names matches
    (`label.label_names`: `bulk2-v*-000`, the unrattled copies of the bulk2-v systems), 1 where
    none does. Why: a loss prefactor weighs a term of every label alike; the handful of labels
    that pin one property (the equation of state's unrattled cells) are weighed more only by
    drawing them more often (DP-GEN's `sys_probs`/`auto_prob`)."""
    def weight(system: str) -> float:
        names = label_names(system)
        return next((w for pattern, w in system_weights.items() if any(fnmatchcase(n, pattern) for n in names)), 1.0)

    drawn = [weight(system) * count_frames([system]) for system in training_systems]
    return [d / sum(drawn) for d in drawn]


def network(model: dict[str, Any]) -> dict[str, Any]:
    """What of a DeePMD `model` section (`deepmd_input`'s) a model trained from another
    (`--init-frz-model`) must share with it: the type map, the descriptor and the fitting net,
    their seeds aside."""
    def unseeded(section: dict[str, Any]) -> dict[str, Any]:
        return {key: [unseeded(part) for part in value] if key == "list" else value  # a hybrid's parts
                for key, value in section.items() if key != "seed"}

    return {"type_map": list(model["type_map"]), "descriptor": unseeded(model["descriptor"]),
            "fitting_net": unseeded(model["fitting_net"])}


def member_network(work_dir: str | Path) -> dict[str, Any]:
    """The network of the member trained in `work_dir` (its `input.json`)."""
    return network(json.loads((Path(work_dir) / "input.json").read_text())["model"])


@dataclass(frozen=True)
class DpCommand:
    """One `dp --pt` command line, the directory it runs in and its log's name there."""

    arguments: list[str]
    cwd: Path
    log_name: str

    @property
    def log(self) -> Path:
        return self.cwd / self.log_name


def run_dp(*commands: DpCommand) -> None:
    """Run `commands` in order in one process (`tasks.dp_batch`: DeePMD's imports paid once);
    TrainingError with the failed command and its log's tail."""
    for command in commands:
        command.log.unlink(missing_ok=True)  # the last log present is then the failed command's
    # absolute: the batch changes into each command's directory in turn
    payload = json.dumps([{"arguments": c.arguments, "cwd": str(c.cwd.resolve()), "log": str(c.log.resolve())}
                          for c in commands])
    completed = subprocess.run([sys.executable, "-m", "tasks.dp_batch"], input=payload, text=True,
                               cwd=commands[0].cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=child_environment())
    if completed.returncode == 0:
        return
    started = [c for c in commands if c.log.is_file()]
    if not started:  # the batch itself did not start (an import failed)
        raise TrainingError(f"`python -m tasks.dp_batch` exited {completed.returncode}:\n{completed.stdout[-3000:]}")
    failed = started[-1]
    tail = "\n".join(failed.log.read_text(errors="replace").splitlines()[-15:])
    raise TrainingError(f"`dp --pt {' '.join(failed.arguments)}` exited {completed.returncode} in {failed.cwd}:\n{tail}")


def count_frames(systems: Sequence[str]) -> int:
    """Number of frames in DeePMD npy systems."""
    total = 0
    for system in systems:
        for energy_file in Path(system).glob("set.*/energy.npy"):
            total += len(np.load(energy_file))
    return total


def max_neighbours(systems: Sequence[str], rcut_angstrom: float) -> int:
    """The most neighbours within `rcut_angstrom` of any atom in any frame of the DeePMD npy
    `systems` (what `dp neighbor-stat` reports, without a process of its own)."""
    from ase.neighborlist import neighbor_list

    most = 0
    for system in systems:
        for atoms in read_labels(system):
            centres = neighbor_list("i", atoms, rcut_angstrom)
            most = max(most, int(np.bincount(centres).max()) if len(centres) else 0)
    return most


def test_model(model_path: str | Path, systems: Sequence[str], work_dir: str | Path) -> dict[str, float]:
    """`dp --pt test` on held-out systems; RMSE and MAE of energy/atom (eV), force and virial/atom.

    One `dp test` for all systems (`-f` list; the detail files are appended system after
    system): a process per system cost 5-10 s of start-up each. Virial errors are reported
    only when every system has virials (slabs with vacuum have none).
    """
    run_dp(test_command(model_path, systems, work_dir))
    return test_metrics(systems, work_dir)


def test_command(model_path: str | Path, systems: Sequence[str], work_dir: str | Path) -> DpCommand:
    """The `dp test` of `test_model`, its system list written into `work_dir`."""
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    listing = work_dir / "systems.txt"
    listing.write_text("".join(f"{Path(system).resolve()}\n" for system in systems))
    return DpCommand(["test", "-m", str(Path(model_path).resolve()), "-f", str(listing), "-n", "100000",
                      "-d", str(work_dir / "detail")], work_dir, "test.log")


def test_metrics(systems: Sequence[str], work_dir: str | Path) -> dict[str, float]:
    """The errors a `test_command` run in `work_dir` wrote (its detail files)."""
    detail = Path(work_dir) / "detail"
    suffixes = {"energy_per_atom_ev": "e_peratom.out", "force_ev_per_angstrom": "f.out",
                "virial_per_atom_ev": "v_peratom.out"}
    all_virial = all(Path(system, "set.000", "virial.npy").exists() for system in systems)
    result: dict[str, float] = {}
    for key, suffix in suffixes.items():
        path = Path(f"{detail}.{suffix}")
        if not path.exists() or (key == "virial_per_atom_ev" and not all_virial):
            continue
        table = np.atleast_2d(np.loadtxt(path))
        if table.size == 0:
            continue
        half = table.shape[1] // 2
        values = (table[:, half:] - table[:, :half]).ravel()
        result[f"{key}_rmse"] = float(np.sqrt(np.mean(values ** 2)))
        result[f"{key}_mae"] = float(np.mean(np.abs(values)))
    result["n_test_frames"] = float(count_frames(systems))
    return result


def checkpoint_step(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])


def latest_checkpoint(work_dir: Path) -> Path | None:
    """The newest whole checkpoint (`model.ckpt-<step>.pt`) in a member's directory, if any: the
    one DeePMD's pointer file `checkpoint` names, written after the checkpoint itself (a kill
    while it wrote leaves a newer, truncated one), else the newest numbered."""
    pointer = work_dir / "checkpoint"
    named = work_dir / Path(pointer.read_text().strip()).name if pointer.is_file() else None
    if named is not None and named.is_file() and named.stem.rsplit("-", 1)[-1].isdigit():
        return named
    found = [p for p in work_dir.glob("model.ckpt-*.pt") if p.stem.rsplit("-", 1)[1].isdigit()]
    return max(found, key=checkpoint_step) if found else None


def adopt_checkpoint(work_dir: Path, checkpoint: Path) -> None:
    """Make `checkpoint` (another directory's, e.g. an export's) the one `train_member` in
    `work_dir` restarts from: copied in, then named by the pointer file."""
    work_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint, work_dir / checkpoint.name)
    (work_dir / "checkpoint").write_text(checkpoint.name)


def train_member(work_dir: str | Path, training_systems: Sequence[str], validation_systems: Sequence[str],
                 type_map: Sequence[str], seed: int, steps: int, descriptor: dict[str, Any],
                 fitting_neuron: Sequence[int], loss: dict[str, float], init_model: str | Path | None = None,
                 compress: bool = False, **schedule: Any) -> ModelRecord:
    """Train, freeze, test (on `validation_systems`) and optionally compress one model.

    Writes `input.json`, `lcurve.out`, `model.pth` (and `model-compressed.pth`) and
    `record.json` into `work_dir`. `record.json` is written last, atomically: its presence
    means the member is complete. An attempt that was killed (its block reached its
    walltime, its node was lost) left checkpoints every 5 % of the steps: the next attempt
    restarts from the newest one instead of from scratch.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if not training_systems:
        raise ValueError("training_systems is empty: nothing to train on")
    missing = [s for s in [*training_systems, *validation_systems] if not Path(s).is_dir()]
    if missing:
        raise FileNotFoundError(f"DeePMD systems not found: {missing}")
    started = time.perf_counter()
    neighbours = max_neighbours([*training_systems, *validation_systems], descriptor["rcut_angstrom"])
    three_body = descriptor.get("three_body")
    three_body_neighbours = max_neighbours([*training_systems, *validation_systems], three_body["rcut_angstrom"]) \
        if three_body else None
    _write_input(work_dir, training_systems, validation_systems, type_map, seed, steps, descriptor, fitting_neuron,
                 loss, **schedule)
    checkpoint = latest_checkpoint(work_dir)
    arguments = ["train", "input.json"]
    if checkpoint is not None:  # an attempt killed with its block: go on from its last checkpoint
        arguments += ["--restart", checkpoint.name]
    elif init_model:
        arguments += ["--init-frz-model", str(Path(init_model).resolve())]
    model_path = work_dir / "model.pth"
    commands = [DpCommand(arguments, work_dir, "train.log" if checkpoint is None else "train-restart.log"),
                DpCommand(["freeze", "-o", model_path.name], work_dir, "freeze.log")]
    if compress:
        commands.append(compress_command(model_path, work_dir / "model-compressed.pth"))
    if validation_systems:
        commands.append(test_command(model_path, validation_systems, work_dir / "test"))
    run_dp(*commands)  # one process: DeePMD's imports once, not four times
    compressed = str((work_dir / "model-compressed.pth").resolve()) if compress else None  # as compress_model names it
    metrics = test_metrics(validation_systems, work_dir / "test") if validation_systems else {}
    record = ModelRecord(str(model_path), seed, steps, time.perf_counter() - started,
                         count_frames(training_systems), metrics, compressed,
                         str(init_model) if init_model else None,
                         checkpoint_step(checkpoint) if checkpoint is not None else None, neighbours,
                         three_body_neighbours)
    _write_record(work_dir, record)
    return record


def compress_model(model: str | Path, output: str | Path) -> Path:
    """`output`: the frozen `model` with its embedding net tabulated (`dp compress`, seconds),
    its log beside it. TrainingError for a model DeePMD cannot compress (one compressed already)."""
    output = Path(output).resolve()
    run_dp(compress_command(model, output))
    return output


def compress_command(model: str | Path, output: str | Path) -> DpCommand:
    """The `dp compress` of `model` into `output`, its log beside it."""
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    return DpCommand(["compress", "-i", str(Path(model).resolve()), "-o", output.name], output.parent,
                     f"{output.stem}.log")


def md_model(model: str | Path, output: str | Path) -> str:
    """The file MD runs for the DeePMD `model`: the compressed copy its training made where it is
    a member's (`md_models`), else compressed to `output` (seconds; 3.2 times the atom-steps per
    second of the frozen one on one core here, the same forces to 2e-3 eV/Å:
    `tests/test_train.py`), or `model` as given where DeePMD cannot compress it (one compressed
    already)."""
    (made,) = md_models([model])
    if made != str(model):
        return made
    try:
        return str(compress_model(model, output))
    except TrainingError:
        return str(model)


def _write_input(work_dir: Path, training_systems: Sequence[str], validation_systems: Sequence[str],
                 type_map: Sequence[str], seed: int, steps: int, descriptor: dict[str, Any],
                 fitting_neuron: Sequence[int], loss: dict[str, float], **schedule: Any) -> None:
    config = deepmd_input([str(Path(s).resolve()) for s in training_systems],
                          [str(Path(s).resolve()) for s in validation_systems], type_map, seed, steps,
                          descriptor, fitting_neuron, loss, **schedule)
    (work_dir / "input.json").write_text(json.dumps(config, indent=2))


def _write_record(work_dir: Path, record: ModelRecord) -> None:
    """`record.json`, atomically and last: its presence means the member is complete. Paths
    below the member's directory: the workdir can move."""
    stored = {**asdict(record), "model_path": "model.pth",
              "compressed_path": "model-compressed.pth" if record.compressed_path else None,
              "init_model": os.path.relpath(Path(record.init_model).resolve(), work_dir.resolve())
              if record.init_model else None}
    write_json(work_dir / "record.json", stored)


def restore_member(model: str | Path, record: dict[str, Any], work_dir: str | Path,
                   training_systems: Sequence[str], validation_systems: Sequence[str], type_map: Sequence[str],
                   seed: int, steps: int, descriptor: dict[str, Any], fitting_neuron: Sequence[int],
                   loss: dict[str, float], init_model: str | Path | None = None, compress: bool = False,
                   **schedule: Any) -> ModelRecord:
    """Write a member's directory as `train_member` (called with the same arguments) would have,
    from a frozen model trained before (an export): its `input.json`, the model (compressed
    again, seconds, where the member is compressed), and `record.json` with the metrics and
    wall time of the training that made it."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    _write_input(work_dir, training_systems, validation_systems, type_map, seed, steps, descriptor, fitting_neuron,
                 loss, **schedule)
    shutil.copy(model, work_dir / "model.pth")
    compressed = str(compress_model(work_dir / "model.pth", work_dir / "model-compressed.pth")) if compress else None
    restored = ModelRecord(**{**record, "model_path": str(work_dir / "model.pth"), "compressed_path": compressed,
                              "init_model": str(init_model) if init_model else None})
    _write_record(work_dir, restored)
    return restored


def read_model_record(work_dir: str | Path) -> ModelRecord:
    """A member's record, its paths where the member now lies."""
    work_dir = Path(work_dir)
    record = ModelRecord(**json.loads((work_dir / "record.json").read_text()))
    for name in ("model_path", "compressed_path", "init_model"):
        if getattr(record, name):
            setattr(record, name, str((work_dir / getattr(record, name)).resolve()))
    return record


def md_models(models: Sequence[str | Path]) -> list[str]:
    """The models MD runs for frozen `models`: each member's compressed model where its training
    made one (tabulated embedding: the same forces to 2e-3 eV/Å, `tests/test_train.py`, and
    2.3 times the atom-steps per second in LAMMPS, README's MD benchmark), else the model itself
    (initial models given as files). The frozen ones stay what the next training starts from."""
    result = []
    for model in models:
        member = Path(model).parent
        compressed = read_model_record(member).compressed_path if Path(model).name == "model.pth" and (
            member / "record.json").is_file() else None
        result.append(compressed or str(model))
    return result


def training_data(work_dir: str | Path) -> tuple[list[str], list[str]]:
    """The training and validation systems a member was trained on (its `input.json`)."""
    training = json.loads((Path(work_dir) / "input.json").read_text())["training"]
    return list(training["training_data"]["systems"]), list(training.get("validation_data", {}).get("systems", []))


def ensemble_key(work_dir: str | Path) -> str:
    """What the members of one ensemble share: a digest of their `input.json` (data, net, loss,
    schedule) with the seeds taken out."""
    def without_seeds(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: without_seeds(v) for k, v in value.items() if k != "seed"}
        return [without_seeds(v) for v in value] if isinstance(value, list) else value

    settings = without_seeds(json.loads((Path(work_dir) / "input.json").read_text()))
    return json_digest(settings)


def ensemble_forces(models: Sequence[str | Path], frames: Sequence[Atoms], type_map: Sequence[str]) -> np.ndarray:
    """Forces of every frame under every model, shape (models, frames, atoms, 3); frames of equal size."""
    prepare_process()
    from deepmd.infer import DeepPot

    if len({len(f) for f in frames}) != 1:
        raise ValueError("frames passed together must have the same number of atoms")
    coords = np.array([f.positions for f in frames]).reshape(len(frames), -1)
    cells = np.array([f.cell.array for f in frames]).reshape(len(frames), -1)
    types = [type_map.index(s) for s in frames[0].get_chemical_symbols()]
    periodic = bool(frames[0].pbc.all())
    result = []
    for model in models:
        potential = DeepPot(str(model))
        _, forces, _ = potential.eval(coords, cells if periodic else None, types)
        result.append(np.asarray(forces).reshape(len(frames), -1, 3))
    return np.array(result)


def force_deviation(forces: np.ndarray) -> np.ndarray:
    """Per-frame (max, min, mean) over atoms of the ensemble force standard deviation.

    For atom i: sqrt(<|f_i - <f_i>|^2>) over models (DP-GEN's `max_devi_f` is the max over
    atoms). `forces` has shape (models, frames, atoms, 3); returns (frames, 3).
    """
    mean = forces.mean(axis=0, keepdims=True)
    per_atom = np.sqrt(np.mean(np.sum((forces - mean) ** 2, axis=-1), axis=0))  # (frames, atoms)
    return np.stack([per_atom.max(axis=1), per_atom.min(axis=1), per_atom.mean(axis=1)], axis=1)


def model_deviation(models: Sequence[str | Path], frames: Sequence[Atoms], type_map: Sequence[str]) -> np.ndarray:
    """(frames, 3) array of max/min/mean force deviation, as the columns of DP-GEN's model_devi.out."""
    return force_deviation(ensemble_forces(models, frames, type_map))
