"""The core's typed errors arrive as the matching Python exceptions, naming what is wrong, and a
refused call changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from dps import _core

CONFIG: _core._DpsConfig = {
    "decay": 0.7,
    "prior_alpha": [[1.0] * 3] * 3,
    "prior_state": [1 / 3] * 3,
    "entropy_weight": 0.0,
    "candidate_ratio": None,
    "seed": 0,
}


def test_a_config_of_the_wrong_type_or_shape_is_refused_naming_the_option():
    with pytest.raises(TypeError, match=r"config\['decay'\] must be float, got str"):
        _core.DpsCore(10, {**CONFIG, "decay": "fast"})  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match=r"config does not fit: missing \['seed'\], unexpected \['sed'\]"):
        _core.DpsCore(10, {**{k: v for k, v in CONFIG.items() if k != "seed"}, "sed": 0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"config\['prior_state'\] = \[0.5, 0.5\] does not fit list\[float\]"):
        _core.DpsCore(10, {**CONFIG, "prior_state": [0.5, 0.5]})
    with pytest.raises(ValueError, match="decay must be in"):
        _core.DpsCore(10, {**CONFIG, "decay": 0.0})


def test_a_state_that_does_not_fit_is_refused_without_a_change():
    core = _core.DpsCore(10, CONFIG)
    core.observe(np.array([1, 2]), np.array([0, 3]), np.array([4, 4]))
    before = core.state()
    bad = dict(before)
    bad["alpha"] = before["alpha"].astype(np.float64)
    with pytest.raises(TypeError, match=r"state\['alpha'\] has dtype float64, expected float32"):
        core.load_state(bad)  # type: ignore[arg-type]
    bad["alpha"] = before["alpha"][:9]
    with pytest.raises(ValueError, match=r"state\['alpha'\] has shape \(9, 3, 3\), expected \(10, 3, 3\)"):
        core.load_state(bad)  # type: ignore[arg-type]
    bad["alpha"] = before["alpha"].copy()
    bad["alpha"][4, 0, 0] = -1.0
    with pytest.raises(ValueError, match="alpha of prompt 4"):
        core.load_state(bad)  # type: ignore[arg-type]
    after = core.state()
    assert all(np.array_equal(np.asarray(after[k]), np.asarray(v)) for k, v in before.items())  # type: ignore[literal-required]


def rows() -> _core.LogRows:
    ids = np.array([0, 0, 1], np.int64)
    return _core.LogRows(np.array([0, 1, 0], np.int64), ids, np.array([1, 2, 4], np.int64), np.full(3, 4), 0)


def test_file_errors_are_os_errors_and_a_damaged_file_a_value_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        _core.LogRows.load(tmp_path / "missing.bin")
    with pytest.raises(FileNotFoundError, match="rows.bin"):
        rows().save(tmp_path / "no-such-folder" / "rows.bin")
    with pytest.raises(IsADirectoryError):
        _core.LogRows.load(tmp_path)
    path = tmp_path / "rows.bin"
    rows().save(path)
    assert _core.LogRows.load(path).rows == 3
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="rows.bin: the file ends early"):
        _core.LogRows.load(path)
    path.write_bytes(b"PK\x03\x04 not a log world")
    with pytest.raises(ValueError, match="not a saved log world"):
        _core.LogRows.load(path)
