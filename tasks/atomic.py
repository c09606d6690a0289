"""Files that are whole or absent: a reader (a rerun's verification, `campaign status`, another
worker) never finds one half written, wherever its writer was killed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def write_json(path: str | Path, payload: Any) -> Path:
    """`payload` as JSON at `path`: written beside it, then renamed over it (one rename is atomic
    on a POSIX file system). The temporary name carries the writer's pid, so two writers of one
    file never write into each other's temporary."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(payload, indent=1))
    temporary.replace(path)
    return path


def copy_file(source: str | Path, destination: str | Path) -> Path:
    """`source`'s bytes at `destination`, whole or not at all (as `write_json`)."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, temporary)
    temporary.replace(destination)
    return destination
