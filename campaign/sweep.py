"""Sweep expansion: a mapping of parameter lists becomes a list of sweep points.

A sweep such as::

    temperature: [200, 300, 400]
    zip:
      - rate: [0.5, 1, 5]
        falling_speed: [500, 1000, 5000]

expands as the cartesian product of every plain parameter with every zip group, where a
zip group moves its parameters together (the k-th values of each list belong together).
Expansion is deterministic: parameters vary in the order they are written, the last one
fastest. Each point has a stable id, a hash of its canonical parameters, so that adding a
temperature to a sweep does not rename the runs that already exist.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any, Mapping

Scalar = int | float | str | bool

#: Physical constraints of parameters that are known by name: (predicate, message).
#: Applied wherever a sweep or a protocol parameter block uses these names.
PARAMETER_RULES: dict[str, tuple[Any, str]] = {
    "temperature": (lambda v: v > 0, "must be > 0 K"),
    "temperature_start": (lambda v: v > 0, "must be > 0 K"),
    "temperature_end": (lambda v: v > 0, "must be > 0 K"),
    "rate": (lambda v: v > 0, "must be > 0 Li/ps"),
    "falling_speed": (lambda v: v > 0, "must be > 0 m/s"),
    "timestep": (lambda v: v > 0, "must be > 0 ps"),
    "duration": (lambda v: v > 0, "must be > 0 ps"),
    "steps": (lambda v: v >= 1, "must be >= 1"),
    "density": (lambda v: v > 0, "must be > 0 g/cm^3"),
    "replica": (lambda v: v >= 0, "must be >= 0"),
    "quench_rate": (lambda v: v > 0, "must be > 0 K/ps"),
    "mpi_ranks": (lambda v: v >= 1 and v == int(v), "must be a whole number >= 1"),
}


def check_parameter(name: str, value: Any) -> str | None:
    """Return a problem message when `value` breaks the rule known for `name`, else None."""
    rule = PARAMETER_RULES.get(name)
    if rule is None:
        return None
    predicate, message = rule
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, not {value!r}"
    return None if predicate(value) else message


@dataclass(frozen=True)
class SweepPoint:
    """One combination of sweep parameters, with its stable id and position in the grid."""

    parameters: dict[str, Scalar]
    index: int

    @property
    def point_id(self) -> str:
        return point_id(self.parameters)

    @property
    def label(self) -> str:
        """Readable name such as ``temperature=300_rate=1``, for directory names and logs."""
        return "_".join(f"{k}={v}" for k, v in self.parameters.items()) or "single"


def point_id(parameters: Mapping[str, Scalar]) -> str:
    """Stable 12-hex-digit id of a parameter combination, independent of key order."""
    canonical = json.dumps(dict(sorted(parameters.items())), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def sweep_problems(sweep: Mapping[str, Any]) -> list[tuple[list[str | int], str]]:
    """All problems of a sweep mapping as (sub-path, message); empty when it is valid."""
    problems: list[tuple[list[str | int], str]] = []
    seen: set[str] = set()

    def check_list(path: list[str | int], name: str, values: Any) -> None:
        if not isinstance(values, list) or not values:
            problems.append((path, "must be a non-empty list of values"))
            return
        for i, value in enumerate(values):
            if not isinstance(value, (int, float, str, bool)):
                problems.append((path + [i], "must be a number, string or boolean"))
                continue
            message = check_parameter(name, value)
            if message:
                problems.append((path + [i], message))
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


def expand_sweep(sweep: Mapping[str, Any] | None, replicas: int = 1) -> list[SweepPoint]:
    """Expand a validated sweep mapping into its points (replicas as the fastest axis)."""
    axes: list[list[dict[str, Scalar]]] = []
    for key, values in (sweep or {}).items():
        if key == "zip":
            for group in values:
                names = list(group)
                axes.append([dict(zip(names, combo)) for combo in zip(*(group[n] for n in names))])
        else:
            axes.append([{key: v} for v in values])
    if replicas > 1:
        axes.append([{"replica": r} for r in range(replicas)])
    points: list[SweepPoint] = []
    for index, combo in enumerate(itertools.product(*axes)):
        parameters: dict[str, Scalar] = {}
        for part in combo:
            parameters.update(part)
        points.append(SweepPoint(parameters=parameters, index=index))
    return points

