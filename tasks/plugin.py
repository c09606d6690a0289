"""Typed plug-ins: the one pattern behind protocols, fields, labellers, potentials and builders.

A plug-in declares its `name`, a pydantic parameter model (`Params`: units in the field
names or descriptions, bounds, defaults in exactly one place, cross-field rules as model
validators, unknown names refused) and its behaviour. A `Registry` maps names to plug-ins;
adding one is one module plus one `register` line in the registry's package.

`problems(model, data)` validates parameters and returns every problem as (path, message)
with a "did you mean" suggestion for misspelt names, so the campaign config can report
them by YAML path, all at once.
"""

from __future__ import annotations

import difflib
from typing import Any, Generic, Iterator, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

Path = tuple[str | int, ...]


class Params(BaseModel):
    """Base of every plug-in's parameters: unknown names are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class UnknownPlugin(KeyError):
    """A name that no plug-in of a registry has; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its argument; this is a sentence
        return str(self.args[0])


def did_you_mean(word: str, candidates: Any) -> str:
    """' (did you mean 'x'?)' for the closest candidate, or '' when nothing is close."""
    candidates = [str(c) for c in candidates]
    close = difflib.get_close_matches(str(word), candidates, n=1, cutoff=0.6)
    if not close and len(str(word)) >= 3:  # `rcut` for `rcut_angstrom`, `stride` for `trajectory_stride`
        close = [c for c in candidates if c.startswith(str(word)[:-1]) or c.endswith(f"_{word}")][:1]
    if not close:
        lowered = {str(c).lower(): str(c) for c in candidates}
        close = [lowered[str(word).lower()]] if str(word).lower() in lowered else []
    return f" (did you mean '{close[0]}'?)" if close else ""


T = TypeVar("T")


class Registry(Generic[T]):
    """Plug-ins of one kind by name, in registration order."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, plugin: T) -> T:
        name = getattr(plugin, "name")
        if name in self._items:
            raise ValueError(f"a {self.kind} named '{name}' is already registered")
        self._items[name] = plugin
        return plugin

    def unregister(self, name: str) -> None:
        del self._items[name]

    def __getitem__(self, name: str) -> T:
        if name not in self._items:
            raise UnknownPlugin(self.unknown(name))
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def unknown(self, name: Any) -> str:
        return f"unknown {self.kind} '{name}'{did_you_mean(name, self._items)}; known: {', '.join(self._items)}"


def _model_inside(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds: X, list[X], dict[str, X], X | None."""
    import typing

    for _ in range(3):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        if not arguments:
            return None
        annotation = arguments[-1]
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _is_mapping(annotation: Any) -> bool:
    import typing

    for _ in range(3):
        if typing.get_origin(annotation) is dict:
            return True
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        if not arguments or isinstance(annotation, type):
            return False
        annotation = arguments[-1]
    return False


def field_at(model: type[BaseModel] | None, location: Path) -> Any:
    """The pydantic field a location inside `model` ends in (list indices and mapping keys
    skipped), or None."""
    field, skip = None, False
    for part in location:
        if isinstance(part, int) or skip:
            skip = False
            continue
        if model is None or str(part) not in model.model_fields:
            return None
        field = model.model_fields[str(part)]
        model = _model_inside(field.annotation)
        skip = _is_mapping(field.annotation)
    return field


def real_location(model: type[BaseModel], location: Path) -> Path:
    """`location` without the tags pydantic adds for the branches of a union (`size.int`)."""
    kept: list[str | int] = []
    current: type[BaseModel] | None = model
    skip = False
    for part in location:
        if isinstance(part, int) or skip:
            kept.append(part)
            skip = False
            continue
        if current is None or str(part) not in current.model_fields:
            break
        kept.append(part)
        field = current.model_fields[str(part)]
        current = _model_inside(field.annotation)
        skip = _is_mapping(field.annotation)
    return tuple(kept)


def names_at(model: type[BaseModel], location: Path) -> list[str]:
    """The names the model accepts at a location inside it (its own at the top)."""
    if not [p for p in location if not isinstance(p, int)]:
        return list(model.model_fields)
    field = field_at(model, location)
    inner = _model_inside(field.annotation) if field is not None else None
    return list(inner.model_fields) if inner else []


def message_of(item: Mapping[str, Any], field: Any = None) -> str:
    """One pydantic error in plain words; bounds say the unit of the field's description."""
    kind, context = item["type"], item.get("ctx") or {}
    unit = (field.description or "").split(",")[0] if field is not None else ""
    unit = f" ({unit})" if unit and len(unit) <= 16 else ""
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(context.values()))
        limit = f"{limit:g}" if isinstance(limit, (int, float)) else limit
        return f"must be {bounds[kind]} {limit}{unit}, not {item.get('input')!r}"
    if kind == "int_from_float":
        return f"must be a whole number, not {item.get('input')!r}"
    if kind in ("literal_error", "enum"):
        expected = str(context.get("expected", ""))
        options = [o.strip().strip("'") for o in expected.replace(" or ", ",").split(",") if o.strip()]
        return f"must be one of {expected}, not {item.get('input')!r}{did_you_mean(item.get('input'), options)}"
    if kind == "union":
        import typing

        annotation = getattr(field, "annotation", None)
        options = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
        described = " or ".join(getattr(a, "__name__", None) if isinstance(a, type) else str(a).replace("typing.", "")
                                for a in options)
        return f"must be {described}, not {item.get('input')!r}"
    if kind in ("too_short", "too_long"):
        return item["msg"].replace("List should", "must").replace("should", "must")
    return item["msg"].removeprefix("Value error, ").replace("Input should be", "must be")


def problems(model: type[BaseModel], data: Mapping[str, Any], what: str = "") -> list[tuple[Path, str]]:
    """Every problem of `data` as parameters of `model`: (path inside data, message).

    Unknown names get a suggestion and the list of accepted ones; missing ones say what
    they mean; a rule that spans several fields (a model validator) has the empty path.
    """
    try:
        model.model_validate(dict(data))
    except ValidationError as error:
        return validation_lines(error, model, what)
    return []


def validation_lines(error: ValidationError, model: type[BaseModel], what: str = "") -> list[tuple[Path, str]]:
    """pydantic's errors as (path, message) lines in the words of a campaign config."""
    accepted = list(model.model_fields)
    subject = f"{what} " if what else ""
    lines: list[tuple[Path, str]] = []
    for item in error.errors():
        location = tuple(p for p in item["loc"] if not str(p).startswith("function-"))
        kind = item["type"]
        if kind != "extra_forbidden" and real_location(model, location) != location:
            location = real_location(model, location)
            kind, item = "union", {**item, "type": "union"}
        if kind == "extra_forbidden" and len(location) == 1:
            name = str(location[0])
            message = (f"{subject}takes no parameter '{name}'{did_you_mean(name, accepted)}; "
                       f"it takes: {', '.join(accepted)}")
        elif kind == "missing" and len(location) == 1:
            field = model.model_fields.get(str(location[0]))
            description = f" ({field.description})" if field is not None and field.description else ""
            message = f"{subject}needs parameter '{location[0]}'{description}"
            location = ()
        elif kind == "extra_forbidden":
            known = names_at(model, location[:-1])
            message = f"unknown field{did_you_mean(location[-1], known)}" + (f"; known: {', '.join(known)}"
                                                                             if known else "")
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = message_of(item, field_at(model, location))
        if (location, message) not in lines:
            lines.append((location, message))
    return lines
