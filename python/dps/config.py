"""Typed configuration from TOML: one strict loader and one `--set` for train configs and replay scenarios.

A configuration is a dataclass; `load(cls, table)` builds it from a TOML table and refuses, with
one message naming the key, anything the dataclass does not declare or a value of the wrong type:

    config: grpo.clip_hgh: unknown key; known keys here: lr, weight_decay, ...
    replay/math.toml: run.batch_size: expected an integer >= 1, got 'eight' (from --set run.batch_size=eight)

What a field's annotation may be: a dataclass (a sub-table), bool, int, float (an integer is
taken as a float), str, `Literal[...]`, `X | Y` (the first that fits), `list[X]`, `tuple[X, Y]`,
`tuple[X, ...]` (one X alone counts as a tuple of one), `dict[str, X]`, `Any`, and
`Annotated[X, Check(...)]` for a condition on the value. Field metadata (`field(metadata=...)`)
may rename the TOML key (`toml_key("class")`), read a dataclass's fields from the enclosing table
(`flatten()`), or collect the keys nobody declares (`rest()`). A union of dataclasses is chosen by
`Annotated[A | B, Tagged(choose)]`, `choose(table)` returning the class. A dataclass checks what
types cannot say in `__post_init__`, raising `FieldError(key, problem)`; the loader names the
table it belongs to.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------
# TOML files and --set


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A TOML file's table; a missing file or bad TOML raises an error naming the file (`what`: its kind)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such {what} (the file does not exist)")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: not valid TOML ({e})") from e


def parse_value(text: str) -> Any:
    """A `--set` value in TOML syntax (1e-4, true, [1, 2], "x"); a bare word is taken as a string."""
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def set_dotted(table: dict[str, Any], key: str, value: Any, where: str) -> None:
    """table[a][b][c] = value for key "a.b.c", making the inner tables that are missing."""
    *inner, last = key.split(".")
    for part in inner:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise ValueError(f"{where}: {part} is not a table")
    table[last] = value


def apply_sets(data: dict[str, Any], items: list[str], settable: tuple[str, ...] | None = None) -> dict[str, str]:
    """Apply `--set KEY=VALUE` items to `data` in place (KEY dotted into sub-tables, VALUE in TOML
    syntax); `settable`: the top-level keys that may be set (None: any). Returns each key set and
    the item that set it, for `load`'s messages."""
    origins: dict[str, str] = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        if settable is not None and key.split(".")[0] not in settable:
            raise ValueError(f"--set {item!r}: only {', '.join(settable)} can be set")
        set_dotted(data, key, parse_value(text), f"--set {item}")
        origins[key] = f"--set {item}"
    return origins


# --------------------------------------------------------------------------------------------
# What a field may say about itself


class FieldError(ValueError):
    """A bad value of one key, raised by a dataclass's `__post_init__` (or a Tagged chooser); the loader
    prefixes the file and the table."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


@dataclass(frozen=True)
class Check:
    """`Annotated[X, Check(test, wants)]`: a value of type X must also pass `test`; `wants` says what
    fits ("an integer >= 1"), in place of X's own words, when it does not."""

    test: Callable[[Any], bool]
    wants: str


@dataclass(frozen=True)
class Tagged:
    """`Annotated[A | B | C, Tagged(choose)]`: a table is read as the dataclass `choose(table)` returns."""

    choose: Callable[[dict[str, Any]], type]


def toml_key(name: str) -> dict[str, Any]:
    """Field metadata: the field is read from this TOML key (e.g. "class", a Python keyword)."""
    return {"toml_key": name}


def flatten(defaults: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Field metadata: a dataclass-typed field whose own fields are keys of the enclosing table.
    `defaults(table)`, when given, supplies values under the table's own (a preset's), and may
    raise FieldError."""
    return {"flatten": True, "defaults": defaults}


def rest() -> dict[str, Any]:
    """Field metadata: a `dict[str, Any]` field that collects every key the dataclass does not declare."""
    return {"rest": True}


# --------------------------------------------------------------------------------------------
# The loader


@dataclass(frozen=True)
class _Where:
    """Where a value came from: the label of the file (or "config") and each `--set` origin."""

    label: str
    origins: dict[str, str]

    def error(self, key: str, problem: str) -> ValueError:
        via = self.origins.get(key)
        return ValueError(f"{self.label}: {key}: {problem}" + (f" (from {via})" if via else ""))


class _Refused(Exception):
    """A value that does not fit a type: what would fit, in words (and whether to show the value's
    type rather than the value: a table wanted)."""

    def __init__(self, wants: str, show_type: bool = False):
        self.wants, self.show_type = wants, show_type


def load(cls: type[Any], table: Any, label: str = "config", origins: dict[str, str] | None = None) -> Any:
    """Build dataclass `cls` from a TOML `table`, strictly (see the module docstring). Errors are
    ValueErrors "LABEL: KEY: problem", with the `--set` item that gave the value when `origins`
    (from `apply_sets`) names it."""
    where = _Where(label, origins or {})
    return _value(table, cls, "", where)


def check_value(value: Any, annotation: Any, key: str, label: str, origins: dict[str, str] | None = None) -> Any:
    """`value` read as `annotation` (the loader's rules), or the loader's ValueError naming `key`."""
    return _value(value, annotation, key, _Where(label, origins or {}))


def _value(value: Any, typ: Any, key: str, where: _Where) -> Any:
    try:
        return _coerce(value, typ, key, where)
    except _Refused as no:
        got = type(value).__name__ if no.show_type else repr(value)
        raise where.error(key, f"expected {no.wants}, got {got}") from None


def _coerce(value: Any, typ: Any, key: str, where: _Where) -> Any:
    origin = typing.get_origin(typ)
    if typ is Any:
        return value
    if origin is typing.Annotated:
        return _annotated(value, typ, key, where)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise _Refused("a table", show_type=True)
        return _build(typ, value, key, where)
    if typ in _SCALARS:
        test, wants, convert = _SCALARS[typ]
        if not test(value):
            raise _Refused(wants)
        return convert(value)
    if typ is type(None):
        if value is not None:
            raise _Refused("nothing")
        return None
    if origin is typing.Literal:
        choices = typing.get_args(typ)
        if not any(value == c and type(value) is type(c) for c in choices):
            raise _Refused("one of " + ", ".join(repr(c) for c in choices))
        return value
    if origin in (typing.Union, types.UnionType):
        return _union(value, typing.get_args(typ), key, where)
    if origin is list:
        if not isinstance(value, list):
            raise _Refused("a list")
        (item,) = typing.get_args(typ)
        return [_value(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is tuple:
        return _tuple(value, typing.get_args(typ), key, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise _Refused("a table", show_type=True)
        _, item = typing.get_args(typ)
        return {k: _value(v, item, _join(key, k), where) for k, v in value.items()}
    raise TypeError(f"config: {key}: unsupported field type {typ!r}")  # pragma: no cover


def _annotated(value: Any, typ: Any, key: str, where: _Where) -> Any:
    inner, *extras = typing.get_args(typ)
    tagged = next((e for e in extras if isinstance(e, Tagged)), None)
    if tagged is not None:
        if not isinstance(value, dict):
            raise _Refused("a table", show_type=True)
        try:
            chosen = tagged.choose(value)
        except FieldError as e:
            raise where.error(_join(key, e.key), e.problem) from None
        return _build(chosen, value, key, where)
    checks = [e for e in extras if isinstance(e, Check)]
    try:
        out = _coerce(value, inner, key, where)
    except _Refused as no:
        raise _Refused(checks[0].wants, no.show_type) if checks else no from None
    for check in checks:
        if not check.test(out):
            raise _Refused(check.wants)
    return out


def _union(value: Any, options: tuple[Any, ...], key: str, where: _Where) -> Any:
    wants = []
    for option in options:
        try:
            return _coerce(value, option, key, where)
        except _Refused as no:
            if option is not type(None):
                wants.append(no.wants)
    raise _Refused(" or ".join(wants))


def _tuple(value: Any, args: tuple[Any, ...], key: str, where: _Where) -> tuple[Any, ...]:
    if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: a list of X, or one X
        items = value if isinstance(value, (list, tuple)) else [value]
        try:
            return tuple(_coerce(v, args[0], key, where) for v in items)
        except _Refused as no:
            raise _Refused(f"{no.wants} or a list of them") from None
    if not isinstance(value, (list, tuple)) or len(value) != len(args):
        raise _Refused(f"a list of {len(args)} values")
    return tuple(_value(v, a, f"{key}[{i}]", where) for i, (v, a) in enumerate(zip(value, args, strict=True)))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and key else prefix or key


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def at_least(low: int) -> Check:
    """An integer no smaller than `low`."""
    return Check(lambda v: v >= low, f"an integer >= {low}")


#: A count (an integer >= 1) and an integer >= 0, for annotations.
Count = typing.Annotated[int, at_least(1)]
NonNegativeInt = typing.Annotated[int, at_least(0)]

#: Scalar types: (test, what fits in words, conversion).
_SCALARS: dict[Any, tuple[Callable[[Any], bool], str, Callable[[Any], Any]]] = {
    bool: (lambda v: isinstance(v, bool), "true or false", bool),
    int: (is_int, "an integer", int),
    float: (is_number, "a number", float),
    str: (lambda v: isinstance(v, str), "a string", str),
}


def _fields(cls: Any) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def _keys(cls: Any) -> list[str]:
    """The TOML keys a dataclass reads, flattened fields' keys included, in declaration order."""
    out = []
    for f, typ in _fields(cls):
        if f.metadata.get("flatten"):
            out += _keys(typ)
        elif not f.metadata.get("rest"):
            out.append(f.metadata.get("toml_key", f.name))
    return out


def _flattened(f: dataclasses.Field[Any], typ: Any, data: dict[str, Any], prefix: str, where: _Where) -> dict[str, Any]:
    """The keys of a flattened field's dataclass in the enclosing table, over the field's defaults."""
    given = {k: data[k] for k in _keys(typ) if k in data}
    defaults = f.metadata.get("defaults")
    if defaults is None:
        return given
    try:
        return {**defaults(data), **given}
    except FieldError as e:
        raise where.error(_join(prefix, e.key), e.problem) from None


def _build(cls: Any, data: dict[str, Any], prefix: str, where: _Where) -> Any:
    known = _keys(cls)
    fields = _fields(cls)
    hints: dict[str, str] = {}
    for f, typ in fields:  # a flattened dataclass's hints hold in the enclosing table
        if f.metadata.get("flatten"):
            hints.update(getattr(typ, "KEY_HINTS", {}))
    hints.update(getattr(cls, "KEY_HINTS", {}))
    rest_field = next((f for f, _ in fields if f.metadata.get("rest")), None)
    unknown = [k for k in data if k not in known]
    if unknown and rest_field is None:
        k = unknown[0]
        problem = hints.get(k) or f"unknown key; known keys here: {', '.join(known)}"
        raise where.error(_join(prefix, k), problem)
    own = {f.metadata.get("toml_key", f.name): (f, typ) for f, typ in fields if not f.metadata}
    own.update({f.metadata["toml_key"]: (f, typ) for f, typ in fields if "toml_key" in f.metadata})
    kwargs: dict[str, Any] = {}
    for name, value in data.items():  # in the table's order, so that the first bad key is the one named
        if name in own:
            f, typ = own[name]
            kwargs[f.name] = _value(value, typ, _join(prefix, name), where)
    for f, typ in fields:
        if f.metadata.get("flatten"):
            kwargs[f.name] = _build(typ, _flattened(f, typ, data, prefix, where), prefix, where)
    if rest_field is not None:
        kwargs[rest_field.name] = {k: data[k] for k in unknown}
    for name, (f, _) in own.items():
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise where.error(_join(prefix, name), hints.get(name) or "missing (it has no default)")
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise where.error(_join(prefix, e.key), e.problem) from None
