"""Every download fcnxs makes, in one place: a registry entry's file into the cache.

- The cache: ``$FCNXS_HOME``, else ``$XDG_CACHE_HOME/fcnxs``, else ``~/.cache/fcnxs``;
  downloads in ``downloads/``. A file there is complete and checked: it is written under a
  temporary name, its hash (and size) checked, then renamed (pooch does the hashing and the
  rename), so a later use reads it without any request.
- A dropped connection is resumed with an HTTP Range request from the bytes already
  received (kept as ``downloads/NAME.part``, never taken for the file).
- Two processes asking for the same name download it once: the second waits on a lock.
- ``FCNXS_MIRROR`` (a base URL) replaces every entry's scheme and host, for machines behind
  a firewall; ``FCNXS_OFFLINE=1`` forbids the network: a missing file is then an error that
  names the URL, where the cache expects it and ``fcnxs models fetch NAME --from FILE``.
- A file obtained by hand (``--from``) is checked exactly as a download would be.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pooch
from filelock import FileLock
from tqdm import tqdm

from fcnxs.core.errors import FcnxsError
from fcnxs.hub.registry import Entry

log = logging.getLogger(__name__)

CHUNK = 1 << 20
ATTEMPTS = 4
"""Connections per download: each one after a drop resumes where the last stopped."""


def home() -> Path:
    """The cache folder."""
    if os.environ.get("FCNXS_HOME"):
        return Path(os.environ["FCNXS_HOME"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fcnxs"


def downloaded(entry: Entry, file_name: str | None = None) -> Path:
    """Where the cache keeps an entry's file (``file_name``: one of a dataset's extra files)."""
    return home() / "downloads" / entry.name / (file_name or entry.file_name)


def source_url(url: str) -> str:
    """``url``, its scheme and host replaced by ``FCNXS_MIRROR`` when that is set."""
    mirror = os.environ.get("FCNXS_MIRROR")
    return url if not mirror else mirror.rstrip("/") + urlsplit(url).path


def offline() -> bool:
    return os.environ.get("FCNXS_OFFLINE", "").strip() not in ("", "0", "false", "no")


def fetch(
    entry: Entry,
    *,
    file_name: str | None = None,
    url: str | None = None,
    hash: str | None = None,
    copy_from: Path | None = None,
) -> Path:
    """The entry's file in the cache, downloaded (or copied from ``copy_from``) and checked
    if it is not there yet. ``file_name``, ``url`` and ``hash`` name a dataset's extra file."""
    path = downloaded(entry, file_name)
    url = source_url(url or entry.url)
    hash = hash if file_name else entry.hash
    if path.exists():  # complete and checked: it was renamed into place only then
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    locks = home() / "locks"
    locks.mkdir(exist_ok=True)
    with FileLock(str(locks / f"{entry.name}.{path.name}.lock")):
        if path.exists():  # another process fetched it meanwhile
            return path
        if copy_from is None and offline():
            raise FcnxsError(
                f"{entry.name}: not in the cache ({path}) and FCNXS_OFFLINE is set, so "
                f"{url} is not fetched; put the file there with `fcnxs models fetch "
                f"{entry.name} --from FILE`"
            )
        downloader = _Copy(copy_from) if copy_from else _Resuming(path, entry.size)
        known = hash if hash and not hash.startswith("sha256-prefix:") else None
        pooch.get_logger().setLevel(logging.WARNING)  # our own log says where it went
        try:
            pooch.retrieve(
                url, known_hash=known, fname=path.name, path=path.parent, downloader=downloader
            )
        except ValueError as exc:  # pooch: the hash differs; it removed the file
            Path(str(path) + ".part").unlink(missing_ok=True)
            reason = str(exc).splitlines()[0]
            source = _source(copy_from, url)
            raise FcnxsError(
                f"{entry.name}: {source} is not the published file ({reason}); nothing was kept"
            ) from None
        _check_prefix(entry, path, hash, _source(copy_from, url))
        log.info("%s: %s saved as %s", entry.name, _source(copy_from, url), path)
        if entry.licence:
            log.info("%s: licence: %s", entry.name, entry.licence)
    return path


def _source(copy_from: Path | None, url: str) -> str:
    return str(copy_from) if copy_from else url


def _check_prefix(entry: Entry, path: Path, hash: str | None, source: str) -> None:
    """torchvision's files: the first hex digits of their sha256 are in their names."""
    if not hash or not hash.startswith("sha256-prefix:"):
        return
    prefix = hash.split(":", 1)[1]
    digest = pooch.file_hash(str(path), alg="sha256")
    if not digest.startswith(prefix):
        path.unlink()
        raise FcnxsError(
            f"{entry.name}: {source} is not the published file (its sha256 {digest[:12]}… "
            f"does not start with {prefix}); nothing was kept"
        )


class _Copy:
    """pooch's downloader for a file obtained by hand: copied, then checked as a download."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def __call__(self, url: str, output_file: str, pooch_: object) -> None:
        if not self.source.is_file():
            raise FcnxsError(f"{self.source}: no such file")
        shutil.copyfile(self.source, output_file)


class _Resuming:
    """pooch's downloader with what it lacks: a dropped connection resumed by a Range
    request from the bytes received so far, and an expected size checked."""

    def __init__(self, path: Path, size: int | None) -> None:
        self.partial = Path(str(path) + ".part")
        self.size = size

    def __call__(self, url: str, output_file: str, pooch_: object) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise FcnxsError(f"{url}: not an http or https address, which is what fcnxs fetches")
        for attempt in range(ATTEMPTS):
            try:
                self._once(url)
                break
            except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
                reason = getattr(exc, "reason", None) or exc
                if isinstance(exc, urllib.error.HTTPError) or attempt + 1 == ATTEMPTS:
                    raise FcnxsError(
                        f"cannot download {url} ({reason}); behind a firewall set "
                        "FCNXS_MIRROR to a server holding the same paths, or fetch the "
                        "file another way and register it with `fcnxs models fetch NAME "
                        "--from FILE`"
                    ) from None
                log.info("connection lost (%s); resuming %s", reason, url)
        have = self.partial.stat().st_size
        if self.size is not None and have != self.size:
            self.partial.unlink()
            raise ValueError(f"{have} bytes, not the {self.size} published")
        os.replace(self.partial, output_file)

    def _once(self, url: str) -> None:
        have = self.partial.stat().st_size if self.partial.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        with urllib.request.urlopen(request, timeout=60) as response:
            if have and response.status != 206:  # the server ignored the range: start over
                have = 0
            total = response.headers.get("Content-Length")
            total = have + int(total) if total is not None else None
            with (
                open(self.partial, "ab" if have else "wb") as out,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=Path(urlsplit(url).path).name,
                    disable=None,
                ) as bar,
            ):
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            if total is not None and self.partial.stat().st_size < total:
                raise ConnectionError("the connection closed early")
