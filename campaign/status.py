"""`campaign status`: what the ledger knows, as tables."""

from __future__ import annotations

import datetime

from rich.console import Console
from rich.table import Table

from campaign.config import CampaignConfig
from campaign.ledger import STATES, Ledger


def print_status(config: CampaignConfig, console: Console | None = None) -> int:
    """Print tasks by stage and state, mean task time, the last errors and events; 0 if a ledger exists."""
    console = console or Console()
    path = config.workdir / "ledger.sqlite"
    if not path.exists():
        console.print(f"campaign '{config.campaign.name}' has not run yet (no {path})")
        return 0
    with Ledger(path) as ledger:
        table = Table(title=f"campaign {config.campaign.name}: tasks by stage")
        table.add_column("stage")
        for state in STATES:
            table.add_column(state, justify="right")
        table.add_column("mean task time (s)", justify="right")
        table.add_column("executors")
        for stage, counts in ledger.counts().items():
            rows = ledger.tasks(stage=stage)
            times = [r.wall_time_s for r in rows if r.state == "done" and r.wall_time_s]
            executors = sorted({r.executor for r in rows if r.executor})
            table.add_row(stage, *(str(counts[s]) for s in STATES),
                          f"{sum(times) / len(times):.1f}" if times else "-", ", ".join(executors))
        console.print(table)
        failed = ledger.tasks(state="failed")
        for row in failed[-5:]:
            console.print(f"[red]failed[/] {row.stage}/{row.name}: {(row.error or '').strip().splitlines()[-1]}")
        for at, stage, message in ledger.events(8):
            stamp = datetime.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")
            console.print(f"[dim]{stamp}[/] {stage}: {message}")
    return 0
