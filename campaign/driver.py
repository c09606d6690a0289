"""One driver per workdir, and which one: the lock `campaign run` holds and `campaign status` reads.

Apart from `campaign.run` so that `campaign status` can ask without importing Parsl and Dask.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

#: The file a driver holds locked while it runs (`driver_lock`); it says which process that is.
DRIVER_LOCK = "driver.lock"

#: How long a starting driver tries for the lock: `running_driver` holds a shared one for the
#: microseconds of its probe, which must not turn a driver away.
_LOCK_TRIES, _LOCK_WAIT_S = 10, 0.1


class CampaignBusy(RuntimeError):
    """Another driver runs the campaign's workdir."""


@contextmanager
def driver_lock(workdir: Path) -> Iterator[None]:
    """One driver per workdir: two would submit the same tasks, and their workers would write
    the same directories and ledger rows. A POSIX record lock (`lockf`), which the kernel drops
    when the process ends however it ends, so a killed driver leaves no stale lock; NFS keeps
    it across a cluster's nodes. CampaignBusy, naming the holder, when another process has it."""
    handle = (workdir / DRIVER_LOCK).open("a+")
    for attempt in range(_LOCK_TRIES):
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if attempt + 1 < _LOCK_TRIES:
                time.sleep(_LOCK_WAIT_S)
                continue
            handle.seek(0)
            holder = handle.read().strip() or "a process that has not written its name yet"
            handle.close()
            raise CampaignBusy(f"{workdir} is being run by {holder}: one `campaign run` per workdir "
                               f"(`campaign status` reads it meanwhile)") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"`campaign run`, pid {os.getpid()} on {socket.gethostname()}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # and with it the lock


def running_driver(workdir: Path) -> str | None:
    """The line naming the driver that runs `workdir` now, or None when none does. Asks the
    lock, not the file, whose text a killed driver leaves behind: a shared lock is tried and let
    go at once (the driver's is exclusive, so they exclude each other). A lock held by this very
    process is not seen (POSIX locks never conflict with their own process's)."""
    try:
        handle = (workdir / DRIVER_LOCK).open("r")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return handle.read().strip() or "a driver that has not written its name yet"
        fcntl.lockf(handle, fcntl.LOCK_UN)
    return None
