"""Shared fixtures. Real-data tests need CTXREC_DATA (CI sets it to ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if "CTXREC_CACHE" not in os.environ:  # keep test embeddings out of the user's cache
        import tempfile

        os.environ["CTXREC_CACHE"] = tempfile.mkdtemp(prefix="ctxrec-test-cache-")
    try:
        import torch

        torch.set_num_threads(1)  # 2-core machine; see notes/stack.md P1
    except ImportError:  # pragma: no cover
        pass


def _data_dir() -> Path | None:
    env = os.environ.get("CTXREC_DATA")
    if env and Path(env).is_dir():
        return Path(env)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _data_dir() is not None:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("CI must set CTXREC_DATA to the shared data directory (../shared/data)")
    skip = pytest.mark.skip(reason="real datasets not found: set CTXREC_DATA to the data directory")
    for item in items:
        if item.get_closest_marker("data") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _data_dir()
    assert d is not None
    return d


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real 4 MiB filesystem (tmpfs): a write past it fails with ENOSPC, as on a full disk. Mounting needs
    root, which CI's machine has."""
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


@pytest.fixture
def fill_disk():  # type: ignore[no-untyped-def]
    """``fill_disk(folder)`` writes a file until the filesystem is full and returns it (delete it to free the space)."""
    import errno

    def fill(disk: Path) -> Path:
        filler = disk / "filler"
        with filler.open("wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        return filler

    return fill
