"""`dp --pt` commands one after another in one Python process: `python -m tasks.dp_batch`, the
commands as JSON on stdin (`tasks.train.run_dp` writes them).

DeePMD-kit's imports (torch and its plug-ins) take 5-13 s a process on our 2-core machines,
longer than freezing, compressing or testing a small model: a member's train, freeze, compress
and test in one process pay them once. Each command is still DeePMD's own command line, run in
its own directory with its own log (stdout and stderr at the file-descriptor level, so C++ and
torch messages land there too). The first command that fails ends the batch with exit status 1,
its traceback at the end of its log; the commands after it leave no log.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any


def run_commands(commands: list[dict[str, Any]]) -> int:
    """Run each {'arguments', 'cwd', 'log'} in order; 0 if all succeeded, else 1."""
    from deepmd.main import main

    for command in commands:
        os.chdir(command["cwd"])
        with open(command["log"], "w") as log:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                main(["--pt", *command["arguments"]])
            except BaseException:  # argparse's SystemExit included: the log says why
                traceback.print_exc()
                return 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(run_commands(json.load(sys.stdin)))
