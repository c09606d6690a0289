"""The sweep grammar, in one place: a mapping of parameter lists becomes sweep points and store axes.

A sweep such as::

    temperature: [200, 300, 400]
    zip:
      - rate: [0.5, 1, 5]
        falling_speed: [500, 1000, 5000]

expands as the cartesian product of every plain parameter with every zip group, where a
zip group moves its parameters together (the k-th values of each list belong together).
Expansion is deterministic: parameters vary in the order they are written, the last one
fastest, and replicas fastest of all. Each point has a stable id, a hash of its swept
parameters (never of its replica), so adding a temperature or a replica later does not
rename the runs that already exist.

The same grammar gives the store its axes (`sweep_axes`): one dimension per plain
parameter, one per zip group named after its first parameter (its other parameters are
coordinates along it), and ``replica`` always.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

from storage.layout import SweepAxes
from tasks.digest import json_digest

Scalar = int | float | str | bool
RESERVED = ("zip", "replica")


@dataclass(frozen=True)
class SweepPoint:
    """One combination of swept parameters and a replica, with its stable id and grid position."""

    parameters: dict[str, Scalar]  # the swept parameters only
    replica: int
    index: int

    @property
    def point_id(self) -> str:
        return point_id(self.parameters)

    @property
    def coordinates(self) -> dict[str, Scalar]:
        """Where the run sits along the store's sweep dimensions."""
        return {**self.parameters, "replica": self.replica}

    @property
    def label(self) -> str:
        """Readable name such as ``temperature=300_rate=1``, for directory names and logs."""
        return "_".join(f"{k}={v}" for k, v in self.parameters.items()) or "single"


def point_id(parameters: Mapping[str, Scalar]) -> str:
    """Stable 12-hex-digit id of a parameter combination, independent of key order."""
    return json_digest(dict(parameters), length=12)


def sweep_problems(sweep: Mapping[str, Any]) -> list[tuple[list[str | int], str]]:
    """Problems of the sweep's grammar as (sub-path, message): lists, zip groups, duplicates."""
    problems: list[tuple[list[str | int], str]] = []
    seen: set[str] = set()

    def check_list(path: list[str | int], name: str, values: Any) -> None:
        if name == "replica":
            problems.append((path, "'replica' is not a sweep parameter: give 'replicas: N' beside the sweep"))
            return
        if not isinstance(values, list) or not values:
            problems.append((path, "must be a non-empty list of values"))
            return
        for i, value in enumerate(values):
            if not isinstance(value, (int, float, str, bool)):
                problems.append((path + [i], "must be a number, string or boolean"))
        repeated = sorted({repr(v) for v in values if values.count(v) > 1})
        if repeated:
            problems.append((path, f"repeats {', '.join(repeated)}: each value would run twice under one id"))
        if name in seen:
            problems.append((path, f"parameter '{name}' appears more than once in the sweep"))
        seen.add(name)

    for key, values in sweep.items():
        if key == "zip":
            if not isinstance(values, list):
                problems.append((["zip"], "must be a list of groups (mappings of equal-length lists)"))
                continue
            for g, group in enumerate(values):
                if not isinstance(group, dict) or not group:
                    problems.append((["zip", g], "must be a non-empty mapping of parameter lists"))
                    continue
                lengths = {name: len(v) for name, v in group.items() if isinstance(v, list)}
                for name, v in group.items():
                    check_list(["zip", g, name], name, v)
                if len(set(lengths.values())) > 1:
                    detail = ", ".join(f"{k} has {n}" for k, n in lengths.items())
                    problems.append((["zip", g], f"zipped lists must have equal lengths ({detail})"))
        else:
            check_list([key], key, values)
    return problems


def parameter_paths(sweep: Mapping[str, Any]) -> dict[str, list[str | int]]:
    """Swept parameter -> its path inside the sweep (for error lines)."""
    paths: dict[str, list[str | int]] = {}
    for key, values in sweep.items():
        if key == "zip":
            for g, group in enumerate(values or []):
                for name in group:
                    paths[name] = ["zip", g, name]
        else:
            paths[key] = [key]
    return paths


def expand_sweep(sweep: Mapping[str, Any] | None, replicas: int = 1) -> list[SweepPoint]:
    """Expand a valid sweep mapping into its points (replicas as the fastest axis)."""
    axes: list[list[dict[str, Scalar]]] = []
    for key, values in (sweep or {}).items():
        if key == "zip":
            for group in values:
                names = list(group)
                axes.append([dict(zip(names, combo)) for combo in zip(*(group[n] for n in names))])
        else:
            axes.append([{key: v} for v in values])
    points: list[SweepPoint] = []
    for index, (*combo, replica) in enumerate(itertools.product(*axes, range(replicas))):
        parameters: dict[str, Scalar] = {}
        for part in combo:
            parameters.update(part)
        points.append(SweepPoint(parameters=parameters, replica=replica, index=index))
    return points


def sweep_axes(sweep: Mapping[str, Any] | None, replicas: int = 1) -> SweepAxes:
    """The store's sweep dimensions for this sweep (see the module docstring)."""
    dims: dict[str, list[Any]] = {}
    companions: dict[str, tuple[str, list[Any]]] = {}
    for key, values in (sweep or {}).items():
        if key == "zip":
            for group in values:
                names = list(group)
                dims[names[0]] = list(group[names[0]])
                for other in names[1:]:
                    companions[other] = (names[0], list(group[other]))
        else:
            dims[key] = list(values)
    dims["replica"] = list(range(replicas))
    return SweepAxes(dims, companions)
