"""`campaign run`: every configured stage in order, under the ledger; a rerun resumes."""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from rich.console import Console

from campaign.active_learning import run_loop
from campaign.config import CampaignConfig
from campaign.driver import driver_lock
from campaign.engine import Display
from campaign.ledger import Ledger
from campaign.production import allocate_studies, production_stage, start_dask
from campaign.properties import properties_stage
from campaign.report import print_summary
from campaign.stages import initial_stage
from storage.api import write_campaign_record
from tasks import train


def run_campaign(config: CampaignConfig, console: Console | None = None, retry_failed: bool = False
                 ) -> dict[str, Any]:
    """Run every configured stage; a second call on the same workdir redoes nothing finished.

    Stages: labels of the systems and the first ensemble (unless initial models are given),
    the active-learning loop (when `explore` is set), the property suite of the potentials,
    production sweeps into the store.
    Deterministic failures are not rerun unless `retry_failed` (after the cause was fixed).
    """
    import parsl

    from campaign.executors import make_parsl_config

    # Tables keep their columns readable in logs and pipes too (rich assumes 80 columns there).
    console = console or Console(width=None if sys.stdout.isatty() else 150)
    started = time.perf_counter()
    config.workdir.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]campaign[/] {config.campaign.name}: workdir {config.workdir}")
    # a bar on a terminal; in a batch log or under nohup, a plain line per stage at most every 30 s
    show = Display(bar=True) if console.is_terminal else Display(report=lambda line: console.print(line, markup=False,
                                                                                                   highlight=False))
    summary: dict[str, Any] = {"workdir": config.workdir, "iterations": [], "production": None, "store": None,
                               "properties": None}
    with driver_lock(config.workdir), Ledger(config.workdir / "ledger.sqlite") as ledger:
        write_campaign_record(config.workdir, config.campaign.name, config.store_path, config.config_hash())
        ledger.log_event("campaign", f"run started (config {config.config_hash()})")
        orphans = stop_orphaned_blocks(config.workdir)
        if orphans:
            ledger.log_event("campaign", f"{orphans} processes of a killed driver's local blocks stopped")
        interrupted = ledger.reset_running()
        if interrupted:
            ledger.log_event("campaign", f"{interrupted} tasks a stopped driver left running set back to pending")
        if retry_failed:
            retried = ledger.reset_failed()
            ledger.log_event("campaign", f"{retried} failed tasks set back to pending (--retry-failed)")
        # before anything runs: a store whose studies have another layout (a changed field, stride,
        # box) stops the campaign now, not after hours of labels and training
        allocations = allocate_studies(config)
        parsl.load(make_parsl_config(config.executors, config.workdir / "parsl"))
        client = None
        previous = signal.signal(signal.SIGTERM, _interrupt)  # `scancel` of the driver's own job
        try:
            initial = initial_stage(config, ledger, show)
            summary.update(labels=initial["labels"], models=initial["models"], initial_models=initial["models"])
            models = initial["model_paths"]
            ran = sum(r.ran for r in (initial["labels"], initial["models"]) if r is not None)
            if config.explore:
                models, records, trained = run_loop(config, ledger, models, initial["training"],
                                                    initial["testing"], initial["added"], show)
                summary["iterations"] = records
                summary["models"] = trained or summary["models"]
                ran += sum(r.tasks_run for r in records)
            if config.properties:
                result, summary["properties"] = properties_stage(config, ledger, train.md_models(models), show)
                ran += result.ran
            if config.production:
                client = start_dask(config)
                console.print(f"Dask dashboard: {client.dashboard_link}")
                result, tables = production_stage(config, ledger, train.md_models(models), client, show,
                                                  allocations)
                summary["production"], summary["store"], summary["tables"] = result, config.store_path, tables
                ran += result.ran
            summary["model_paths"], summary["ran"] = models, ran
        except KeyboardInterrupt:
            # what was submitted and not finished runs no more: pending, for `campaign status` too
            stopped = ledger.reset_running()
            ledger.log_event("campaign", f"interrupted (SIGINT or SIGTERM); finished work is recorded, "
                                         f"{stopped} submitted tasks set back to pending")
            console.print("interrupted: everything finished is recorded and the blocks are cancelled; "
                          "`campaign run` of the same config resumes where it stopped")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            if client is not None:
                client.close()
                client.cluster.close()
            parsl.dfk().cleanup()  # cancels the blocks it submitted (scancel on SLURM)
            parsl.clear()
        ledger.log_event("campaign", "run finished")
    summary["wall_time_s"] = time.perf_counter() - started
    print_summary(console, summary, config)
    return summary


def stop_orphaned_blocks(workdir: Path) -> int:
    """Kill the processes of this machine's local Parsl blocks that a killed driver left (kill -9,
    a lost login session); returns how many. A block runs in a session of its own, and Parsl's
    worker pool does not notice its interchange gone: it idles on, or finishes a task and writes
    its directory beside the worker the next driver gives the same task. Called under
    `driver_lock`, so no driver runs this workdir and every process started under its `parsl/`
    directory is such an orphan. (A cluster's blocks end at their walltime.)"""
    import psutil

    marker = str((workdir / "parsl").resolve()) + os.sep
    orphans = [process for process in psutil.process_iter(["cmdline"])
               if process.pid != os.getpid() and any(marker in part for part in process.info["cmdline"] or [])]
    for process in orphans:
        with suppress(psutil.NoSuchProcess):
            for member in [*process.children(recursive=True), process]:
                with suppress(psutil.NoSuchProcess):
                    member.kill()
    return len(orphans)


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (a batch system ending the driver's job) as Ctrl-C: the same clean stop."""
    raise KeyboardInterrupt
