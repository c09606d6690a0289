"""`campaign status` and `campaign watch`: what the ledger knows, as tables.

Read-only: status opens the ledger while a campaign runs (SQLite WAL lets readers in
beside the writer) and never changes it. A ledger that cannot be read is named, with exit
code 2, never a traceback.
"""

from __future__ import annotations

import datetime
import re
import sys
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from campaign.config import CampaignConfig
from campaign.driver import running_driver
from campaign.ledger import STATES, Ledger
from storage.sqlite import DatabaseUnreadable


def _eta(rows: list, workers: int, driven: bool) -> str:
    """Remaining time of a stage: unfinished tasks x mean task time / workers (from finished
    tasks); "stopped" when no driver runs the campaign."""
    times = [r.wall_time_s for r in rows if r.state == "done" and r.wall_time_s]
    left = sum(r.state in ("pending", "running") for r in rows)
    if not left:
        return "done"
    if not driven:
        return "stopped"
    if not times:
        return "?"
    seconds = left * (sum(times) / len(times)) / max(1, workers)
    return str(datetime.timedelta(seconds=round(seconds)))


def failure_reason(error: str) -> str:
    """The line of a recorded error that says what went wrong: the last exception line, which
    for a wrapped tool error is followed by pages of its output (a torch stack, a log tail)."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    messages = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Failed|Lost):", line)]
    return (messages[-1] if messages else lines[-1] if lines else "")[:300]


def blocks_view(config: CampaignConfig) -> Table | None:
    """The campaign's Parsl blocks on SLURM (the jobs named after the batch scripts in the
    workdir's parsl/*/submit_scripts): job id, executor, state, elapsed and limit, and the
    workers they hold or wait for."""
    import shutil
    import subprocess

    slurm = {label: e for label, e in config.executors.items() if e.provider == "slurm"}
    if not slurm or not shutil.which("squeue"):
        return None
    ours = {path.name for path in (config.workdir / "parsl").glob("*/submit_scripts/parsl.*")}
    listing = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T|%M|%l"], capture_output=True, text=True,
                             timeout=30, check=False).stdout
    table = Table(title="blocks (SLURM)")
    for column in ("job", "executor", "state", "elapsed", "walltime", "workers"):
        table.add_column(column, overflow="fold")
    for line in listing.splitlines():
        job, name, state, elapsed, limit = (line.split("|") + [""] * 5)[:5]
        if name not in ours:
            continue
        label = name.split(".")[1]
        workers = slurm[label].max_workers * slurm[label].nodes_per_block if label in slurm else 0
        table.add_row(job, label, state, elapsed, limit, f"{workers} {'running' if state == 'RUNNING' else 'waiting'}")
    return table


def driver_line(driver: str | None, running_tasks: int) -> Text:
    """Which driver runs the campaign (`running_driver`), or that none does, and what the
    ledger's "running" then means: tasks a driver submitted and never saw end."""
    if driver is not None:
        return Text(f"driver: {driver}")
    line = "no driver runs this campaign"
    if running_tasks:
        line += (f": its {running_tasks} tasks recorded as running were left by a driver that ended without "
                 f"its clean-up (a machine lost, a kill -9); the next `campaign run` submits them again")
    return Text(line)


def status_view(config: CampaignConfig) -> Group:
    """Tasks by stage and state (with mean time and ETA), the driver, AL iterations, last errors
    and events."""
    path = config.workdir / "ledger.sqlite"
    if not path.exists():
        return Group(Text(f"campaign '{config.campaign.name}' has not run yet (no {path})"))
    parts: list = []
    driver = running_driver(config.workdir)
    with Ledger(path, readonly=True) as ledger:
        table = Table(title=f"campaign {config.campaign.name}: tasks by stage")
        table.add_column("stage", overflow="fold")
        for state in STATES:
            table.add_column(state, justify="right", overflow="fold")
        table.add_column("mean task time (s)", justify="right", overflow="fold")
        table.add_column("ETA", justify="right", overflow="fold")
        table.add_column("executors", overflow="fold")
        by_stage = ledger.counts()
        for stage, counts in by_stage.items():
            rows = ledger.tasks(stage=stage)
            times = [r.wall_time_s for r in rows if r.state == "done" and r.wall_time_s]
            executors = sorted({r.executor for r in rows if r.executor})
            workers = sum(config.executors[e].max_workers * config.executors[e].max_blocks
                          for e in executors if e in config.executors) or 1
            table.add_row(stage, *(str(counts[s]) for s in STATES),
                          f"{sum(times) / len(times):.1f}" if times else "-", _eta(rows, workers, driver is not None),
                          ", ".join(executors))
        parts.append(table)
        parts.append(driver_line(driver, sum(counts["running"] for counts in by_stage.values())))
        blocks = blocks_view(config)
        if blocks is not None:
            parts.append(blocks)
        iterations = ledger.iterations()
        if iterations:
            from campaign.report import iterations_table

            parts.append(iterations_table(iterations))
        for row in ledger.tasks(state="failed")[-5:]:
            reason = failure_reason(row.error or "")
            parts.append(Text.from_markup(f"[red]failed[/] {row.stage}/{row.name}: ") + Text(reason))
        for at, stage, message in ledger.events(8):
            stamp = datetime.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")
            parts.append(Text.from_markup(f"[dim]{stamp}[/] {stage}: ") + Text(message))
    return Group(*parts)


def print_status(config: CampaignConfig, console: Console | None = None) -> int:
    try:
        view = status_view(config)
    except DatabaseUnreadable as error:
        print(f"campaign status: cannot read the ledger: {error}", file=sys.stderr)
        return 2
    (console or _console()).print(view)
    return 0


def _console() -> Console:
    """A terminal's own width; in a pipe or a log, 200 columns (rich would squeeze into 80 and cut numbers)."""
    return Console(width=None if sys.stdout.isatty() else 200)


def watch(config: CampaignConfig, interval: float = 5.0, console: Console | None = None) -> int:
    """Refresh the status view every `interval` seconds (> 0) until Ctrl-C."""
    if not interval > 0:
        raise ValueError(f"interval must be > 0 s, got {interval}")
    try:
        with Live(status_view(config), console=console or _console(), refresh_per_second=1, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(status_view(config))
    except KeyboardInterrupt:
        pass
    except DatabaseUnreadable as error:
        print(f"campaign watch: cannot read the ledger: {error}", file=sys.stderr)
        return 2
    return 0
