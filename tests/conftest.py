"""Shared fixtures: small interaction logs written on the fly (tests never need ../shared)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[[str | bytes, str], Path]:
    """Writes text or bytes to a CSV file in a temp dir and returns its path."""

    def write(content: str | bytes, name: str = "interactions.csv") -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return write
