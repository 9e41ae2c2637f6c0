"""deploy/kind/e2e.sh: valid shell, and a clear skip (exit 77) where no Docker engine runs."""

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kind" / "e2e.sh"


def _docker_engine_running() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    return subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_script_skips_clearly_without_a_docker_engine():
    if _docker_engine_running():
        pytest.skip("a Docker engine is running here: run deploy/kind/e2e.sh itself")
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 77, proc.stderr
    assert "kind e2e: SKIPPED:" in proc.stderr
    assert "docker" in proc.stderr.lower()
