"""An inventory that cannot be loaded is said in one line (exit 2), never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import bgdeploy


def test_a_sandbox_that_is_not_up_is_said_plainly(tmp_path: Path) -> None:
    env = {**os.environ, "BGDEPLOY_STATE_DIR": str(tmp_path), "BGDEPLOY_SANDBOX": "nothere"}
    done = bgdeploy("status", "sandbox", env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "nothere" in done.stderr
