"""Atoms in the box over time (deposition adds them); every run records it."""

from __future__ import annotations

from typing import Any

from tasks.fields.base import FrameCache, FrameField, Variable
from tasks.frame import Frame


class AtomCount(FrameField):
    name = "n_atoms"

    def variables(self) -> dict[str, Variable]:
        return {"n_atoms": Variable(("time",), {"units": "1", "long_name": "atoms in the box"})}

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        return {"n_atoms": len(frame.ids)}
