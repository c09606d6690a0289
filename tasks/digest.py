"""The one content digest of JSON-like settings.

Task ids, a label's level of theory, a config's provenance hash, an ensemble's key and a sweep
point's id are all this digest: changing it changes every content address in every ledger and
label index, so it lives here once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def json_digest(value: Any, length: int = 16) -> str:
    """First `length` hex digits of the sha256 of `value` as JSON with sorted keys; values JSON
    cannot encode (paths, numpy scalars) enter by their `str`."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]
