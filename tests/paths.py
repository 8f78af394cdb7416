"""Where the tests find the repository and the real logs in ../shared/data.

A test that needs a real log calls `shared_data(...)`: where the file is missing it skips on a
developer's machine, and fails when `CI` is set, since CI always has ../shared beside the clone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """The path of a file under ../shared/data; skip (or fail under CI) when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"{path} is not here (../shared/data beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have it", pytrace=False)
        pytest.skip(message)
    return path
