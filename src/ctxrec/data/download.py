"""Fetch the datasets that have an official download (GroupLens) into the data directory.

Only files whose SHA-256 matches the official file are kept: each extracted file is hashed and
compared with the table below (the hashes of the files inside the official zips), then moved into
place atomically, so an interrupted or tampered download never leaves a half-written file.
Offline, the download fails fast (``timeout``, 10 s by default) with a
:class:`~ctxrec.errors.DatasetNotFoundError` that names the missing file, the folder to put it in
and the URL to get it from. Set ``CTXREC_OFFLINE=1`` to never try the network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ctxrec.errors import DatasetNotFoundError

OFFLINE_ENV = "CTXREC_OFFLINE"
DEFAULT_TIMEOUT_S = 10.0
_CHUNK = 1 << 16
_OnError = Callable[[str], DatasetNotFoundError]  # reason -> the error to raise (names file, folder, URL)


@dataclass(frozen=True, kw_only=True)
class Download:
    """An official zip and the SHA-256 of each file we use from it."""

    url: str
    folder: str
    """Sub-folder of the data directory the files go to."""
    member_prefix: str
    """Folder inside the zip that holds the files (e.g. ``ml-100k/``)."""
    sha256: dict[str, str] = field(default_factory=dict)
    """File name -> SHA-256 of the official file; only these files are extracted."""
    licence: str = ""


DOWNLOADS: dict[str, Download] = {
    "ml-100k": Download(
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        folder="ml-100k",
        member_prefix="ml-100k/",
        sha256={
            "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
            "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
            "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
            "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
        },
        licence="GroupLens: research use only, cite Harper & Konstan 2015, no redistribution (see README).",
    ),
    "ml-latest-small": Download(
        url="https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        folder="ml-latest-small",
        member_prefix="ml-latest-small/",
        sha256={
            "README.txt": "63d22ac138e80fae37021797ed8e1b9424b5239dc576a137422adf783ae3f404",
            "links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
            "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
            "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
            "tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d",
        },
        licence="GroupLens: research use, cite Harper & Konstan 2015; redistribution allowed (see README.txt).",
    ),
}


def ensure_files(
    name: str,
    root: Path,
    files: Sequence[str],
    *,
    url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: bool = True,
) -> dict[str, Path]:
    """Paths of ``files`` of dataset ``name`` under ``root``, downloading them first if any is missing."""
    spec = DOWNLOADS[name]
    folder = root / spec.folder
    paths = {f: folder / f for f in files}
    missing = [f for f, p in paths.items() if not p.exists()]
    if missing:
        download(name, root, url=url, timeout=timeout, progress=progress, missing=missing)
    return paths


def download(
    name: str,
    root: Path,
    *,
    url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: bool = True,
    missing: Sequence[str] = (),
    sha256: dict[str, str] | None = None,
) -> list[Path]:
    """Download dataset ``name``'s zip, verify each file's SHA-256, extract into ``root/<folder>``.

    ``url`` overrides the official URL (a mirror, or a ``file://`` zip); ``sha256`` overrides the
    expected hashes (only for tests and private mirrors). Returns the paths written. Existing files
    are left alone.
    """
    spec = DOWNLOADS[name]
    url = url or spec.url
    expected = sha256 if sha256 is not None else spec.sha256
    folder = root / spec.folder
    need = list(missing) or list(expected)

    def not_found(reason: str) -> DatasetNotFoundError:
        first = str(folder / need[0])
        return DatasetNotFoundError(
            f"dataset file {first!r} is missing and {reason}. Download {url} by hand and unzip its "
            f"{spec.member_prefix} files ({', '.join(need)}) into {str(folder)!r} "
            f"(the data directory is set by --data-dir or $CTXREC_DATA). {spec.licence}".strip()
        )

    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise not_found(f"downloads are disabled (${OFFLINE_ENV} is set)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = tempfile.TemporaryDirectory(dir=folder, prefix=".download-")  # same filesystem: atomic moves
    except OSError as exc:
        raise not_found(f"the folder is not writable ({exc})") from None
    with staging as tmp:
        archive = Path(tmp) / "archive.zip"
        _fetch(url, archive, timeout=timeout, progress=progress, on_error=not_found)
        return _extract(archive, folder, spec.member_prefix, expected, url=url, on_error=not_found)


def _fetch(url: str, dest: Path, *, timeout: float, progress: bool, on_error: _OnError) -> None:
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    try:
        _resolve_within(url, timeout)
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {url.rsplit('/', 1)[-1]}",
                      disable=not progress, leave=False) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise on_error(f"downloading {url} failed ({reason})") from None


def _resolve_within(url: str, timeout: float) -> None:
    """Name resolution ignores socket timeouts; bound it too, so offline machines fail fast."""
    import socket
    import threading
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return  # file:// and friends
    result: list[BaseException | None] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(parts.hostname, parts.port or 443)
            result.append(None)
        except OSError as exc:
            result.append(exc)

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        raise OSError(f"could not resolve {parts.hostname!r} within {timeout:g} s (no network?)")
    if result[0] is not None:
        raise result[0]


def _extract(
    archive: Path, folder: Path, prefix: str, expected: dict[str, str], *, url: str, on_error: _OnError
) -> list[Path]:
    """Verify every expected file first, then move them all into place (all or nothing)."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise on_error(f"the file downloaded from {url} is not a zip archive") from None
    staged: list[tuple[Path, Path]] = []
    with zf:
        names = set(zf.namelist())
        for fname, want in expected.items():
            member = prefix + fname
            if member not in names:
                raise on_error(f"the archive from {url} has no {member!r}")
            target = folder / fname
            if target.exists():
                continue
            tmp = archive.parent / fname
            digest = hashlib.sha256()
            with zf.open(member) as src, open(tmp, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
            got = digest.hexdigest()
            if got != want:
                raise on_error(
                    f"{member!r} from {url} has SHA-256 {got}, expected {want} (corrupt download, or the "
                    "upstream file changed)"
                )
            staged.append((tmp, target))
    for tmp, target in staged:
        shutil.move(str(tmp), str(target))
    return [t for _, t in staged]


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file (to check a hand-downloaded file against ``DOWNLOADS``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["DOWNLOADS", "OFFLINE_ENV", "Download", "download", "ensure_files", "sha256_of"]
