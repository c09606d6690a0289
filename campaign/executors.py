"""Parsl configuration from the `executors:` section.

One `HighThroughputExecutor` per label (`cpu`, `gpu`, or any name the config gives).
`local` uses `LocalProvider` on this machine; `slurm`, `pbspro` and `lsf` pass the
config's partition/queue, account, blocks, walltime, worker_init and scheduler_options
straight to Parsl's providers, so a campaign moves to a cluster by editing YAML only.
Workers get the thread and malloc settings of `tasks.runtime` through `worker_init`.

Walltime-safe: a cluster block drains before its walltime (`drain_period`), so no task
starts that the walltime would kill; a task lost anyway (a block killed, a node lost) is
retried in a new block, up to `campaign.max_retries`, and a task lost every time is reported
as longer than a block. `available_accelerators` gives each worker its own GPU
(`CUDA_VISIBLE_DEVICES`, set by Parsl).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.launchers import SingleNodeLauncher, SrunLauncher
from parsl.providers import LocalProvider, LSFProvider, PBSProProvider, SlurmProvider

from campaign.config import ExecutorSection
from tasks.runtime import MALLOC_SETTINGS, THREAD_SETTINGS


def _worker_init(section: ExecutorSection) -> str:
    exports = " ".join(f"export {k}={shlex.quote(v)};" for k, v in {**THREAD_SETTINGS, **MALLOC_SETTINGS}.items())
    return f"{exports} {section.worker_init}".strip()


def make_provider(section: ExecutorSection):
    """The Parsl execution provider for one executor section."""
    common = dict(init_blocks=section.init_blocks, min_blocks=section.min_blocks, max_blocks=section.max_blocks,
                  worker_init=_worker_init(section))
    if section.provider == "local":
        return LocalProvider(launcher=SingleNodeLauncher(), **common)
    cluster = dict(nodes_per_block=section.nodes_per_block, walltime=section.walltime,
                   scheduler_options=section.scheduler_options, **common)
    if section.provider == "slurm":
        return SlurmProvider(partition=section.partition, account=section.account, exclusive=section.exclusive,
                             launcher=SrunLauncher(), **cluster)
    if section.provider == "pbspro":
        return PBSProProvider(queue=section.queue, account=section.account, **cluster)
    return LSFProvider(queue=section.queue, project=section.account, **cluster)


def walltime_seconds(walltime: str) -> int:
    hours, minutes, seconds = (int(part) for part in walltime.split(":"))
    return 3600 * hours + 60 * minutes + seconds


def drain_period(section: ExecutorSection) -> int | None:
    """Seconds after a block starts when its workers stop taking new tasks, so that none starts
    that the walltime would kill: the walltime less 10 % (at most 15 minutes, at least 10 s)."""
    if section.provider == "local":
        return None
    walltime = walltime_seconds(section.walltime)
    return max(1, walltime - max(10, min(900, walltime // 10)))


class SignalProofExecutor(HighThroughputExecutor):
    """Parsl's HTEX whose interchange no signal for the driver reaches (`campaign.interchange`):
    its shutdown kills the interchange, which ignores the SIGTERM Parsl's own shutdown sends."""

    def shutdown(self, timeout: float = 10.0) -> None:
        if self.interchange_proc is not None:
            self.interchange_proc.kill()
        super().shutdown(timeout)


def make_executor(label: str, section: ExecutorSection) -> HighThroughputExecutor:
    accelerators = section.available_accelerators
    return SignalProofExecutor(
        label=label,
        provider=make_provider(section),
        max_workers_per_node=section.max_workers,
        cores_per_worker=section.cores_per_worker,
        available_accelerators=accelerators if accelerators else (),
        # Local runs talk over loopback only; clusters let Parsl find the interface.
        address="127.0.0.1" if section.provider == "local" else None,
        heartbeat_period=15,
        heartbeat_threshold=60,
        drain_period=drain_period(section),
        # deaf to the driver's signals, ended with the driver (`campaign.interchange`)
        interchange_launch_cmd=[sys.executable, "-m", "campaign.interchange", str(os.getpid())],
    )


def make_parsl_config(executors: dict[str, ExecutorSection], run_dir: str | Path, retries: int = 0) -> Config:
    """A Parsl `Config` with one HTEX per executor label; logs under `run_dir`.

    Parsl starts `interchange.py` and `process_worker_pool.py` from PATH; the directory of
    this interpreter is put first so that an unactivated virtual environment works too.
    """
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    return Config(
        executors=[make_executor(label, section) for label, section in executors.items()],
        run_dir=str(run_dir),
        retries=retries,
        strategy="simple",
        initialize_logging=True,
    )
