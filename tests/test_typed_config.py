"""dps.config: the one strict loader (train configs and replay scenarios) and the one `--set`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import pytest

from dps.config import (
    Count,
    FieldError,
    Tagged,
    apply_sets,
    check_value,
    flatten,
    load,
    rest,
    toml_key,
)


@dataclass
class Inner:
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"


@dataclass
class Shape:
    size: Count = 1
    color: str = "red"

    KEY_HINTS: ClassVar[dict[str, str]] = {"colour": "spelled color here"}

    def __post_init__(self) -> None:
        if self.color == "size" and self.size > 1:
            raise FieldError("color", "cannot name the size")


@dataclass
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    shape: Shape = field(default_factory=Shape, metadata=flatten(lambda t: {"size": 2} if t.get("big") else {}))
    big: bool = False
    tags: tuple[str, ...] = ()
    pair: tuple[int, float] = (0, 0.0)
    table: dict[str, int] = field(default_factory=dict)
    either: float | Literal["auto"] = "auto"
    klass: str | None = field(default=None, metadata=toml_key("class"))


@dataclass
class Open:
    kind: str
    options: dict[str, Any] = field(default_factory=dict, metadata=rest())


def item_kind(table: dict[str, Any]) -> type:
    return Open if "kind" in table else Inner


@dataclass
class Holder:
    item: Annotated[Inner | Open, Tagged(item_kind)]


def test_types_defaults_and_renamed_keys() -> None:
    got = load(Outer, {"name": "x", "inner": {"rate": 1}, "tags": "one", "pair": [1, 2], "class": "m:C", "either": 3})
    assert got.inner == Inner(rate=1.0) and isinstance(got.inner.rate, float)
    assert got.tags == ("one",) and got.pair == (1, 2.0) and got.klass == "m:C" and got.either == 3.0
    assert load(Outer, {"name": "x", "tags": ["a", "b"]}).tags == ("a", "b")
    assert load(Outer, {"name": "x", "size": 3, "color": "blue"}).shape == Shape(3, "blue")  # flattened keys
    assert load(Outer, {"name": "x", "big": True}).shape.size == 2  # the flattened field's defaults, from the table
    assert load(Outer, {"name": "x", "big": True, "size": 5}).shape.size == 5  # under the table's own


@pytest.mark.parametrize(
    "table, message",
    [
        ({"name": "x", "inner": {"rat": 1}}, "cfg: inner.rat: unknown key; known keys here: rate, mode"),
        ({"name": "x", "colour": "red"}, "cfg: colour: spelled color here"),
        ({"name": 3}, "cfg: name: expected a string, got 3"),
        ({"name": "x", "inner": 3}, "cfg: inner: expected a table, got int"),
        ({"name": "x", "inner": {"mode": "c"}}, "cfg: inner.mode: expected one of 'a', 'b', got 'c'"),
        ({"name": "x", "inner": {"rate": True}}, "cfg: inner.rate: expected a number, got True"),
        ({"name": "x", "size": 0}, "cfg: size: expected an integer >= 1, got 0"),
        ({"name": "x", "size": 2, "color": "size"}, "cfg: color: cannot name the size"),
        ({"name": "x", "tags": [1]}, "cfg: tags: expected a string or a list of them, got [1]"),
        ({"name": "x", "pair": [1]}, "cfg: pair: expected a list of 2 values, got [1]"),
        ({"name": "x", "pair": [1.5, 2]}, "cfg: pair[0]: expected an integer, got 1.5"),
        ({"name": "x", "table": {"a": "b"}}, "cfg: table.a: expected an integer, got 'b'"),
        ({"name": "x", "either": "manual"}, "cfg: either: expected a number or one of 'auto', got 'manual'"),
        ({}, "cfg: name: missing (it has no default)"),
        ({"name": 1, "nme": 1}, "cfg: nme: unknown key"),  # unknown keys first
        ({"big": 1, "name": 1}, "cfg: big: expected true or false, got 1"),  # then in the table's order
    ],
)
def test_errors_name_the_key(table: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        load(Outer, table, "cfg")
    assert str(error.value).startswith(message), str(error.value)


def test_rest_and_tagged_unions() -> None:
    assert load(Holder, {"item": {"kind": "k", "a": 1, "b": [2]}}).item == Open("k", {"a": 1, "b": [2]})
    assert load(Holder, {"item": {"rate": 2}}).item == Inner(2.0)
    with pytest.raises(ValueError, match="item.kind: expected a string"):
        load(Holder, {"item": {"kind": 1}})


def test_set_items_and_their_origins() -> None:
    data: dict[str, Any] = {"name": "x", "inner": {"rate": 1.0}}
    origins = apply_sets(data, ["inner.rate=2", "inner.mode=c", 'tags=["a"]'])
    assert data["inner"] == {"rate": 2, "mode": "c"} and data["tags"] == ["a"]
    with pytest.raises(
        ValueError, match=r"cfg: inner.mode: expected one of 'a', 'b', got 'c' \(from --set inner.mode=c\)"
    ):
        load(Outer, data, "cfg", origins)
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        apply_sets({}, ["inner.rate"])
    with pytest.raises(ValueError, match="only name, inner can be set"):
        apply_sets({}, ["shape.size=2"], ("name", "inner"))
    with pytest.raises(ValueError, match="--set name.first=1: name is not a table"):
        apply_sets(data, ["name.first=1"])


def test_check_value_alone() -> None:
    assert check_value(3, float, "decay", "sc.toml") == 3.0
    with pytest.raises(ValueError, match="sc.toml: decay: expected a number, got 'x'"):
        check_value("x", float | None, "decay", "sc.toml")
