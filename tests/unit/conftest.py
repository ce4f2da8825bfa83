"""Helpers shared by the unit tests."""

from __future__ import annotations

import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

GroupData = Callable[..., dict[str, Any]]


def load_group_data(*names: str) -> dict[str, Any]:
    """``group_data/all.py`` then each of ``names`` (``"prod"``, ``"sandbox"`` ...), merged as
    pyinfra merges them: their settings only (no dunders, no imported functions, no helpers
    such as the sandbox's ``CONTAINER_REPOSITORY``)."""
    data: dict[str, Any] = {}
    for name in ("all", *names):
        values = runpy.run_path(str(ROOT / "group_data" / f"{name}.py"))
        data.update({k: v for k, v in values.items() if not k.startswith("__")})
    return {k: v for k, v in data.items() if not callable(v) and k != "CONTAINER_REPOSITORY"}


@pytest.fixture
def group_data() -> GroupData:
    """The group_data loader: ``group_data("prod")`` is all.py and prod.py, merged."""
    return load_group_data
