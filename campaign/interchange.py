"""Parsl's interchange, started in a process group of its own and ended with the driver.

Parsl starts the interchange as a child in the driver's process group. A signal meant for the
driver's group (Ctrl-C in a terminal, `kill -- -PGID`, `timeout`) then ended the interchange
too, and Parsl's cleanup asked the dead interchange which blocks it held and waited for the
answer forever (Parsl issue 2755); a `kill -9` of the driver alone left the interchange running
forever (Parsl issue 3663). Here it has a group of its own, so only Parsl's shutdown (SIGTERM to
its pid) ends it, and the kernel kills it when the driver dies however it dies
(`PR_SET_PDEATHSIG`, which survives the `exec`).

Usage (`HighThroughputExecutor(interchange_launch_cmd=...)`, see `campaign.executors`):
    python -m campaign.interchange <driver pid>
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

#: prctl(2) option: the signal this process gets when the thread that started it ends.
PR_SET_PDEATHSIG = 1


def main() -> None:
    driver = int(sys.argv[1])
    os.setpgid(0, 0)
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != driver:  # the driver died before the death signal was armed
        sys.exit(1)
    os.execvp("interchange.py", ["interchange.py"])  # its configuration follows on stdin


if __name__ == "__main__":
    main()
