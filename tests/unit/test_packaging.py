"""Packaging: installs work without a C compiler, and no generated C is ever shipped.

Builds from a copy of the source tree in a tmp dir (never touching the worktree's
``build/``), without build isolation (no network: the venv's setuptools and Cython are
used), then installs the compiler-less wheel into a fresh venv and runs it there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.unit._impls import PURE_ONLY

REPO = Path(__file__).resolve().parents[2]
#: Everything a build needs; build outputs and local state are left behind.
IGNORED = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.c", ".*cache",
    ".hypothesis",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PURE_ONLY, reason="packaging is checked once, in the native pass"),
]

CHECK_SCRIPT = """
from purelb import fast
space = fast.AddressSpace(2**64)
space.allocate(5)
first = [space.allocate_lowest() for _ in range(7)]
print(fast.IMPLEMENTATION)
print(first, space.lowest_free(5), list(space.iter_allocated())[-2:])
print(fast.winner("10.0.0.1", ["node-a", "node-b", "node-c"]), hex(fast.stable_hash64("a")))
"""
EXPECTED = [
    "fallback",
    "[0, 1, 2, 3, 4, 6, 7] 8 [6, 7]",
    "node-b 0x82a2a958a9bece5b",
]


def _copy_source(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=IGNORED)
    return source


def _build_wheel(source: Path, out: Path, env: dict[str, str]) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
         "--no-index", "-w", str(out), "."],
        cwd=source, capture_output=True, text=True, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("purelb-*.whl")
    return wheel


def _shipped_suffixes(names: list[str]) -> set[str]:
    return {Path(n).suffix for n in names}


def test_wheel_without_compiler_installs_and_uses_fallback(tmp_path):
    """Verify that with CC=/bin/false the wheel is pure and works in a fresh venv."""
    source = _copy_source(tmp_path)
    env = {**_clean_env(), "CC": "/bin/false", "LDSHARED": "/bin/false"}
    wheel = _build_wheel(source, tmp_path / "wheels", env)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert not _shipped_suffixes(names) & {".c", ".so", ".pyx"}, names
    # (The wheel keeps a platform tag: setuptools tags it before the optional build fails.)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, env=_clean_env(),
    )
    run = subprocess.run(
        [str(python), "-c", CHECK_SCRIPT],
        cwd=tmp_path, capture_output=True, text=True, check=True, env=_clean_env(),
    )
    assert run.stdout.splitlines() == EXPECTED
    assert "pure-Python fallback" in run.stderr  # the fallback is announced, not silent


def test_native_wheel_ships_the_extension_but_no_generated_c(tmp_path):
    source = _copy_source(tmp_path)
    wheel = _build_wheel(source, tmp_path / "wheels", _clean_env())
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert [n for n in names if n.endswith(".so")] != [], names
    assert not _shipped_suffixes(names) & {".c", ".pyx", ".html"}, names


def test_sdist_ships_the_cython_source_but_no_generated_c(tmp_path):
    source = _copy_source(tmp_path)
    # Leave a generated file around, as a developer's tree would have one.
    (source / "native" / "_native.c").write_text("/* generated */\n")
    proc = subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta as b; b.build_sdist('out')"],
        cwd=source, capture_output=True, text=True, env=_clean_env(), check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sdist,) = (source / "out").glob("purelb-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert any(n.endswith("native/_native.pyx") for n in names), names
    assert not _shipped_suffixes(names) & {".c", ".so", ".html"}, names


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PURELB_", "PYTHON"))}
