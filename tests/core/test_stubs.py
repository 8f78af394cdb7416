"""The hand-written `_core.pyi` stays true to the compiled extension.

The whole package is type-checked by `make lint` (mypy with [tool.mypy] of pyproject.toml), which CI runs.
"""

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
