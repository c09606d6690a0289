"""dendrite-campaign: the engine (config, sweeps, Parsl executors, ledger, CLI)."""

__version__ = "0.1.0"
