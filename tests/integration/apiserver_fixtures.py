"""Shared fixtures for the API server's integration tests (imported explicitly)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from purelb.apiserver.testing import TestApiServer, open_test_apiserver

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "deploy" / "crds"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}


@pytest.fixture(params=["memory", "sqlite"])
async def srv(request: pytest.FixtureRequest) -> AsyncIterator[TestApiServer]:
    async with open_test_apiserver(storage=request.param, crd_paths=[CRD_DIR]) as s:
        yield s


@pytest.fixture
async def client(srv: TestApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=srv.url, timeout=httpx.Timeout(10.0)) as c:
        yield c


def svc(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": name, "labels": {"app": name}},
                            "spec": {"ports": [{"port": 80}], **spec}}
    return body


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels or {}}, "data": data}


def dumps(doc: Any) -> str:
    return json.dumps(doc)
