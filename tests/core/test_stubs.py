"""The hand-written `_core.pyi` stays true to the compiled extension.

The whole package is type-checked by `make lint` (mypy with [tool.mypy] of pyproject.toml), which CI runs.
"""

import ast
import subprocess
import sys
from pathlib import Path

import dps


def test_stubtest_finds_no_difference(tmp_path):
    (tmp_path / "none.ini").write_text("[mypy]\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "dps._core", "--mypy-config-file", str(tmp_path / "none.ini")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_is_typed():
    assert (Path(dps.__file__).parent / "py.typed").exists()
    assert (Path(dps.__file__).parent / "_core.pyi").exists()


# The stub's TypedDicts for each core's options and state, against what the core defines.
ARRAY_TYPES = {"_Ids": "int64", "_F32": "float32", "_F64": "float64"}


def stub_typeddicts() -> tuple[dict[str, dict[str, str]], dict[str, tuple[str, str]]]:
    """The stub's TypedDicts (name -> {field: annotation}) and each class's Selector[config, state]."""
    tree = ast.parse((Path(dps.__file__).parent / "_core.pyi").read_text())
    dicts, classes = {}, {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [ast.unparse(b) for b in node.bases]
        if bases == ["TypedDict"]:
            dicts[node.name] = {
                s.target.id: ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)
            }
        elif bases and bases[0].startswith("Selector["):
            config, state = bases[0].removeprefix("Selector[").removesuffix("]").split(", ")
            classes[node.name] = (config, state)
    return dicts, classes


def annotation_of(kind: str, shape: tuple | None) -> str:
    if shape is None:
        return kind
    return next((alias for alias, dtype in ARRAY_TYPES.items() if dtype == kind), f"npt.NDArray[np.{kind}]")


def value_fits(annotation: str, value: object) -> bool:
    if annotation.endswith(" | None") and value is None:
        return True
    base = annotation.removesuffix(" | None")
    python_type = {"float": float, "int": int, "bool": bool, "str": str}.get(base) or (
        list if base.startswith("list") else tuple
    )
    return isinstance(value, python_type) and not (python_type is int and isinstance(value, bool))


def test_stub_state_and_config_types_match_the_core():
    from dps import BOTS, DPS, GRESO, HistoryResampling, MoPPS, RateDPS, Uniform

    dicts, classes = stub_typeddicts()
    cores = [p(20)._core for p in (DPS, Uniform, HistoryResampling, MoPPS, GRESO, BOTS, RateDPS)]
    assert {type(c).__name__ for c in cores} == set(classes)
    for core in cores:
        config_name, state_name = classes[type(core).__name__]
        state = dicts[state_name]
        fields = core.state_fields()
        assert [name for name, _, _ in fields] == list(state), type(core).__name__
        for name, kind, shape in fields:
            want = annotation_of(kind, shape)
            assert state[name].split("  #")[0] in (want, f"NotRequired[{want}]"), (type(core).__name__, name)
        config = core.config()
        assert list(config) == list(dicts[config_name]), type(core).__name__
        for key, annotation in dicts[config_name].items():
            assert value_fits(annotation, config[key]), (type(core).__name__, key, config[key])
