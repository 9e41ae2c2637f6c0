"""Kubeconfig files pointing at our server (written with mode 0600: they hold tokens)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    token: str | None = None,
    ca_pem: bytes | None = None,
    namespace: str = "default",
    name: str = "purelb",
) -> Path:
    cluster: dict[str, object] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    user: dict[str, object] = {"token": token} if token else {}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name,
                                                 "namespace": namespace}}],
        "current-context": name,
        "preferences": {},
    }
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.chmod(path, 0o600)
    return path
