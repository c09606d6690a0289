#!/usr/bin/env bash
# Runs pytest from the project's virtual environment with the thread settings the real
# codes need. pytest's exit code 5 ("no tests collected") is turned into a failure with
# a message: a suite that silently runs nothing must never pass.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
# the workers' thread settings (tasks/runtime.py, THREAD_SETTINGS) for the test processes too
eval "export $(.venv/bin/python -c 'import shlex; from tasks.runtime import THREAD_SETTINGS as s
print(" ".join(f"{k}={shlex.quote(v)}" for k, v in s.items()))')"
export PATH="$here/.venv/bin:$PATH"
.venv/bin/python -m pytest -p no:cacheprovider --timeout=1800 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests for: $*" >&2
  exit 1
fi
exit "$rc"
