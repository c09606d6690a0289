"""Task functions for engine tests. They live in an importable module because Parsl
workers import a task's function by module name."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable


def write_marker(output_dir: str, value: int) -> int:
    """A minimal task: creates its directory and writes its result atomically, as real tasks do."""
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / "result.json.tmp").write_text(json.dumps({"value": value, "pid": os.getpid()}))
    (path / "result.json.tmp").replace(path / "result.json")
    return value


def write_marker_after(output_dir: str, value: int) -> int:
    """`write_marker` after `value` tenths of a second of work."""
    time.sleep(value / 10)
    return write_marker(output_dir, value)


def die_once_then_succeed(output_dir: str, value: int) -> int:
    """Kills its own worker process on the first attempt (a lost worker), succeeds on the next."""
    flag = Path(output_dir) / "attempted"
    flag.parent.mkdir(parents=True, exist_ok=True)
    if not flag.exists():
        flag.write_text("1")
        os.kill(os.getpid(), signal.SIGKILL)
    return write_marker(output_dir, value)


def always_die(output_dir: str, value: int) -> int:
    """Kills its own worker every time, as a task longer than any block's walltime is killed."""
    os.kill(os.getpid(), signal.SIGKILL)
    return value


def always_raise(output_dir: str, value: int) -> int:
    raise ValueError(f"invalid structure {value}: atoms too close")


def verify_marker(output_dir: Path):
    path = output_dir / "result.json"
    return json.loads(path.read_text()) if path.exists() else None


def visible_devices(seconds: float) -> str:
    """The GPUs this worker sees (Parsl binds one per worker); waits so that every worker takes tasks."""
    import time

    time.sleep(seconds)
    return f"{os.getpid()}:{os.environ.get('CUDA_VISIBLE_DEVICES', '')}"


def run_then_kill(command: list[str], cwd: Path, done: Callable[[], bool], workdir: Path, poll_s: float = 0.02,
                  timeout_s: float = 300) -> None:
    """Start `command` (a campaign) in its own session, wait until `done()`, then kill -9 it
    and every process it started (the driver and its Parsl workers at once, as a lost node).
    Parsl's local blocks run in sessions of their own, named by their log directory below
    `workdir`; an orphaned worker pool does not notice its interchange gone and would idle on."""
    import psutil

    driver = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    wait_for(done, timeout_s, poll_s)
    blocks = [process for process in psutil.process_iter(["cmdline"])
              if any(str(workdir) in part for part in process.info["cmdline"] or [])]
    os.killpg(driver.pid, signal.SIGKILL)
    for process in blocks:  # some were the driver's own (its interchange), gone with it
        with contextlib.suppress(psutil.NoSuchProcess):
            for member in [*process.children(recursive=True), process]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.kill()
    driver.wait()


def wait_for(condition: Callable[[], bool], seconds: float, poll_s: float = 0.05) -> None:
    """Until `condition()` holds: a guard against a hang (fails after `seconds`), not a timing."""
    deadline = time.time() + seconds
    while time.time() < deadline and not condition():
        time.sleep(poll_s)
    assert condition(), f"not there after {seconds} s"
