"""Content hashes of a job's files (blake2b), cached by path, size, mtime and inode."""

from __future__ import annotations

import glob
import os
import stat
import time

# hashlib's own blake2b, without hashlib: hashlib loads OpenSSL's libcrypto for its other
# algorithms (~4 ms at every start), and orchestrate uses blake2b alone (here, in uptodate,
# state and jobcache).
from _blake2 import blake2b
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

T = TypeVar("T")
GLOB_CHARACTERS = frozenset("*?[")
_CHUNK = 1 << 20
# A file changed again within the file system's timestamp tick after we hashed it would keep
# its (size, mtime) and so a wrong cached hash (git's "racy clean"): rows for files modified
# this close to the moment they were read are not cached; they are read once more later.
RACY_NS = 100_000_000
DIRECTORY = "directory"  # the "hash" of a directory named as an input or output


def is_glob(pattern: str) -> bool:
    return not GLOB_CHARACTERS.isdisjoint(pattern)


class HashCache(Protocol):
    """Where hashes are remembered between runs: the state database."""

    def cached_hash(self, path: str, size: int, mtime_ns: int, inode: int) -> str | None: ...

    def store_hashes(self, rows: Iterable[tuple[str, int, int, int, str]]) -> None: ...


class Found(NamedTuple):
    """A file a pattern named, as stat saw it (a tuple: a no-op run makes one per file)."""

    path: str  # absolute
    size: int
    mtime_ns: int
    inode: int
    is_dir: bool


@dataclass
class Snapshot:
    """The files some patterns name now: relative path -> content hash, and the literal
    paths (or globs matching nothing) that are not there."""

    hashes: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    read: int = 0  # files actually read (not found in the cache)


def scan(base: str, patterns: Iterable[str]) -> tuple[dict[str, Found], list[str]]:
    """Stat what the patterns name, relative to `base` (`**` recursive); runs in a thread."""
    found: dict[str, Found] = {}
    missing: list[str] = []
    for pattern in patterns:
        if is_glob(pattern):
            names = sorted(glob.glob(pattern, root_dir=base, recursive=True))
            hits = [_stat(base, os.path.normpath(name), directories=False) for name in names]
        else:
            hits = [_stat(base, os.path.normpath(pattern), directories=True)]
        present = [hit for hit in hits if hit is not None]
        if not present:
            missing.append(pattern)
        found.update(present)
    return found, missing


def _stat(base: str, name: str, directories: bool) -> tuple[str, Found] | None:
    path = os.path.join(base, name)
    try:
        info = os.stat(path)
    except OSError:
        return None
    is_dir = stat.S_ISDIR(info.st_mode)
    if is_dir and not directories:
        return None  # a glob names the files under a folder, not the folder
    return name, Found(path, info.st_size, info.st_mtime_ns, info.st_ino, is_dir)


def read_hashes(files: list[Found]) -> list[tuple[Found, str, int]]:
    """Each file's blake2b and when it was read (ns); runs in a thread."""
    done = []
    for found in files:
        digest = blake2b(digest_size=16)
        try:
            with open(found.path, "rb") as stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
        except OSError as error:
            done.append((found, f"unreadable: {error.strerror}", 0))
            continue
        done.append((found, digest.hexdigest(), time.time_ns()))
    return done


def inline(work: Callable[[], T]) -> T:
    """Run hashing work right here: for commands that have no hub to protect."""
    return work()


class Hasher:
    """Hashes what a job's patterns name, off the hub through `offload` (a thread pool's
    apply), reading only files whose (path, size, mtime, inode) the cache does not know.
    Literal paths are stat'ed right away; globs are expanded in the thread too."""

    def __init__(self, cache: HashCache, offload: Callable[[Callable[[], Any]], Any] = inline) -> None:
        self.cache = cache
        self.offload = offload

    def snapshot(self, base: str, patterns: Iterable[str]) -> Snapshot:
        patterns = tuple(patterns)
        if not patterns:
            return Snapshot()
        if any(map(is_glob, patterns)):  # walking folders may take long: off the hub
            found, missing = self.offload(lambda: scan(base, patterns))
            return self._hashed(found, Snapshot(missing=missing))
        # Literal paths: a stat each, right here (a thread round trip would cost ~50 times
        # more), and a file the cache knows is never read.
        snapshot = Snapshot()
        hashes, cached_hash = snapshot.hashes, self.cache.cached_hash
        unknown: dict[str, Found] = {}
        for pattern in patterns:
            name = os.path.normpath(pattern)
            path = os.path.join(base, name)
            try:
                info = os.stat(path)
            except OSError:
                snapshot.missing.append(pattern)
                continue
            if stat.S_ISDIR(info.st_mode):
                hashes[name] = DIRECTORY
                continue
            digest = cached_hash(path, info.st_size, info.st_mtime_ns, info.st_ino)
            if digest is None:
                unknown[name] = Found(path, info.st_size, info.st_mtime_ns, info.st_ino, False)
            else:
                hashes[name] = digest
        return self._read(unknown, snapshot) if unknown else snapshot

    def _hashed(self, found: dict[str, Found], snapshot: Snapshot) -> Snapshot:
        """The snapshot with the hashes of `found`, from the cache or read."""
        hashes, cached_hash = snapshot.hashes, self.cache.cached_hash
        unknown: dict[str, Found] = {}
        for name, hit in found.items():
            if hit.is_dir:
                hashes[name] = DIRECTORY
                continue
            cached = cached_hash(hit.path, hit.size, hit.mtime_ns, hit.inode)
            if cached is None:
                unknown[name] = hit
            else:
                hashes[name] = cached
        return self._read(unknown, snapshot) if unknown else snapshot

    def _read(self, unknown: dict[str, Found], snapshot: Snapshot) -> Snapshot:
        """Read the files the cache does not know, off the hub, and cache their hashes."""
        files = list(unknown.values())
        read = self.offload(lambda: read_hashes(files))
        rows = []
        for name, (hit, digest, read_at) in zip(unknown, read, strict=True):
            snapshot.hashes[name] = digest
            if read_at and read_at - hit.mtime_ns > RACY_NS:
                rows.append((hit.path, hit.size, hit.mtime_ns, hit.inode, digest))
        snapshot.read = len(unknown)
        if rows:
            self.cache.store_hashes(rows)
        return snapshot
