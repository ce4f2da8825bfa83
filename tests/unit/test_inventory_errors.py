"""An inventory that cannot be loaded is said in one line (exit 2), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_sandbox_that_is_not_up_is_said_plainly(tmp_path: Path) -> None:
    env = {**os.environ, "BGDEPLOY_STATE_DIR": str(tmp_path), "BGDEPLOY_SANDBOX": "nothere"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "bgdeploy"), "status", "sandbox"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "nothere" in done.stderr
