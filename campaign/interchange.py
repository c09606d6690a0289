"""Parsl's interchange, deaf to the signals meant for the driver and ended with the driver.

Parsl starts the interchange as a child of the driver. A signal meant for the driver reached it
too — Ctrl-C for the terminal's process group, `kill -- -PGID`, `timeout`, and a
batch system ending the driver's job, which signals every process of the job — and the
interchange died of it: Parsl's cleanup then asked the dead interchange which blocks it held
and waited for the answer forever (Parsl issue 2755), so the blocks were never cancelled. A
`kill -9` of the driver alone left the interchange running forever (Parsl issue 3663).

Here the interchange has a process group of its own, ignores SIGINT and SIGTERM (both stay
ignored through the `exec`), and the kernel kills it when the driver dies however it dies
(`PR_SET_PDEATHSIG`, kept through the `exec` too). The driver's cleanup, which still needs it to
cancel the blocks, kills it last (`campaign.executors.SignalProofExecutor`).

Usage (`HighThroughputExecutor(interchange_launch_cmd=...)`):
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
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != driver:  # the driver died before the death signal was armed
        sys.exit(1)
    os.execvp("interchange.py", ["interchange.py"])  # its configuration follows on stdin


if __name__ == "__main__":
    main()
