"""Collapsing a volume file's many small chunks into few, through its mount.

Every fsync (and every close after a write) through `weed mount` uploads what changed as a new
chunk and sends the file's whole entry, every chunk listed, to the filer, which rewrites it in
etcd and in its metadata log. A file appended to and fsynced one record at a time (a log, a
database's write-ahead log, a ledger) gains a chunk per write, so each fsync costs more than the
last: 0.06 s at 1 chunk, 0.29 s at 1300 on a 2-core machine, and the filers' and etcd's memory
grows with it (bench/soak.py, no fault: the ledger 91.6 % available after 10 minutes, the filers'
RSS x5). SeaweedFS merges a file's chunks only when they hold more than twice its bytes (random
overwrites), never for appends, and bundles them into manifests only past 10 000.

Rewriting a range of the file with the bytes it already holds, in one write, gives that range one
chunk per 2 MiB block (the mount uploads aligned blocks of -chunkSizeLimitMB); the chunks it
covers become garbage, which the mount drops from the entry at the next flush. The bytes are the
file's own, read and written back while every process that could write the file is paused
(`podman pause`: the cgroup freezer), so no write of the app can fall between the read and the
write; the range is clipped to the size the file has then, and the file keeps its times.

    observe  `scan`: the volume's files and their chunks from the filer's listing (HTTP, JSON),
             a bounded number of entries per call, resuming where the last call stopped
    decide   `plan_file` / `plan`: the blocks of files past COMPACT_AT_CHUNKS that hold more
             than one chunk, most fragmented first, within a byte budget (pure)
    act      `rewrite`: through the mount point, each range read and written back, one fsync;
             the caller pauses and resumes the writers around it
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import urllib3

BLOCK = 2 << 20  # weed mount's -chunkSizeLimitMB (2): it uploads dirty data in aligned blocks of this
# A file with fewer chunks is left alone: an fsync then costs at most ~40 ms more than at one
# chunk, and pausing the app to compact it would cost more than it saves.
COMPACT_AT_CHUNKS = 200
# Bytes rewritten per file per pass, at most (the app is paused meanwhile): the most fragmented
# blocks first; the rest waits for the next pass.
REWRITE_BUDGET = 16 << 20
PAGE = 1000  # entries per listing request
LIST_TIMEOUT_S = 5.0
DIR_MODE = 0o20000000000  # os.ModeDir as the filer's JSON spells an entry's mode (Go's FileMode)


@dataclass(frozen=True)
class Rewrite:
    """Ranges of one file to write back in place: `path` relative to the volume's root."""

    path: str
    ranges: tuple[tuple[int, int], ...]
    chunks: int  # the file's chunks when it was planned

    @property
    def nbytes(self) -> int:
        return sum(end - start for start, end in self.ranges)


def plan_file(chunks: list[dict], size: int, at_chunks: int = COMPACT_AT_CHUNKS, budget: int = REWRITE_BUDGET,
              block: int = BLOCK) -> tuple[tuple[int, int], ...]:
    """The byte ranges to rewrite so the file has one chunk per fragmented block (pure).
    `chunks`: the filer's chunk list (offset, size). Nothing below `at_chunks` chunks; blocks
    holding two or more chunks, the most first, until `budget` bytes; adjacent ones joined."""
    if len(chunks) < at_chunks or size <= 0:
        return ()
    per_block: dict[int, int] = {}
    for c in chunks:
        start, length = int(c.get("offset") or 0), int(c.get("size") or 0)
        if length <= 0 or start >= size:
            continue
        for b in range(start // block, (min(start + length, size) - 1) // block + 1):
            per_block[b] = per_block.get(b, 0) + 1
    chosen, spent = [], 0
    for b, n in sorted(per_block.items(), key=lambda kv: (-kv[1], kv[0])):
        if n < 2:
            break
        length = min((b + 1) * block, size) - b * block
        if spent + length > budget and chosen:
            break
        chosen.append(b)
        spent += length
    ranges: list[list[int]] = []
    for b in sorted(chosen):
        start, end = b * block, min((b + 1) * block, size)
        if ranges and ranges[-1][1] == start:
            ranges[-1][1] = end
        else:
            ranges.append([start, end])
    return tuple((s, e) for s, e in ranges)


def plan(entries: list[dict], root: str, at_chunks: int = COMPACT_AT_CHUNKS,
         budget: int = REWRITE_BUDGET) -> list[Rewrite]:
    """The rewrites of a volume's files as `scan` listed them (pure): regular files under
    `root` with at least `at_chunks` chunks, the most fragmented first, within `budget` bytes
    in all (one file at least)."""
    found = []
    prefix = root.rstrip("/") + "/"
    for e in entries:
        chunks, full = e.get("chunks") or [], str(e.get("FullPath") or "")
        if len(chunks) < at_chunks or not full.startswith(prefix) or not _regular(e.get("Mode")):
            continue
        if any(c.get("is_chunk_manifest") for c in chunks):
            continue  # a manifest already bundles 10 000 chunks: not what this fixes
        ranges = plan_file(chunks, int(e.get("FileSize") or 0), at_chunks, budget)
        if ranges:
            found.append(Rewrite(full[len(prefix):], ranges, len(chunks)))
    found.sort(key=lambda r: -r.chunks)
    out, spent = [], 0
    for r in found:
        if out and spent + r.nbytes > budget:
            continue
        out.append(r)
        spent += r.nbytes
    return out


def _regular(mode) -> bool:
    """Whether a Go FileMode (the filer's JSON) is a plain file's: Go keeps every type (directory,
    symlink, device, pipe, socket) and setuid/setgid/sticky above the permission bits."""
    return int(mode or 0) & ~0o777 == 0


# ---- observe ---------------------------------------------------------------------------------

@dataclass
class Walk:
    """Where a scan of one volume stopped: directories still to list, the first resuming after
    `after`. Empty: the next scan starts at the root."""

    pending: list[str] = field(default_factory=list)
    after: str = ""


def scan(http: urllib3.PoolManager, filer_url: str, root: str, walk: Walk, limit: int) -> list[dict]:
    """Up to about `limit` file entries of the tree under `root` (the filer's JSON, chunks
    included), going on from where `walk` stopped; `walk` is updated for the next call.
    Raises urllib3/OSError/ValueError when the filer does not answer as expected."""
    if not walk.pending:
        walk.pending, walk.after = [root.rstrip("/")], ""
    files: list[dict] = []
    seen = 0
    while walk.pending and seen < limit:
        directory = walk.pending[0]
        url = f"{filer_url}{quote(directory)}/?limit={PAGE}&lastFileName={quote(walk.after)}"
        resp = http.request("GET", url, headers={"Accept": "application/json"},
                            timeout=urllib3.Timeout(total=LIST_TIMEOUT_S), retries=False)
        if resp.status == 404:
            entries, more = [], False
        elif resp.status != 200:
            raise ValueError(f"filer listing of {directory}: HTTP {resp.status}")
        else:
            doc = json.loads(resp.data)
            entries, more = doc.get("Entries") or [], bool(doc.get("ShouldDisplayLoadMore"))
        for e in entries:
            seen += 1
            if int(e.get("Mode") or 0) & DIR_MODE:
                walk.pending.append(str(e.get("FullPath")))
            else:
                files.append(e)
        if more and entries:
            walk.after = str(entries[-1].get("FullPath", "")).rsplit("/", 1)[-1]
        else:
            walk.pending.pop(0)
            walk.after = ""
    return files


# ---- act -------------------------------------------------------------------------------------

def _open_beneath(mount_point: Path, rel: str) -> int:
    """A descriptor of the regular file `rel` under `mount_point`, refusing any symlink on
    the way (an app controls its volume's names: a link must not lead this root process out
    of the mount). Raises OSError (ENOENT when it went away, ELOOP for a link)."""
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise OSError(errno.EINVAL, f"not a path inside the volume: {rel!r}")
    fd = os.open(mount_point, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for p in parts[:-1]:
            nxt = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        if not stat.S_ISREG(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode):
            raise OSError(errno.EINVAL, f"{rel} is not a regular file")
        target = os.open(parts[-1], os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(target).st_mode):
        os.close(target)
        raise OSError(errno.EINVAL, f"{rel} is not a regular file")
    return target


def rewrite(mount_point: Path, job: Rewrite) -> int:
    """Write each range of `job.path` back with the bytes it holds, then fsync (the mount sends
    the compacted chunk list); the file keeps its access and modification times. Returns the
    bytes rewritten. Only while nothing else writes the file (the caller paused its writers).
    Raises OSError (a file that went away: ENOENT)."""
    fd = _open_beneath(mount_point, job.path)
    try:
        before = os.fstat(fd)
        done = 0
        for start, end in job.ranges:
            end = min(end, before.st_size)  # the file may have shrunk since the listing
            if end <= start:
                continue
            data = os.pread(fd, end - start, start)
            if len(data) != end - start:
                raise OSError(errno.EIO, f"{job.path}: short read at {start} ({len(data)} of {end - start} bytes)")
            view = memoryview(data)
            while view:
                n = os.pwrite(fd, view, start)
                view, start = view[n:], start + n
            done += len(data)
        if done:  # the times first: one fsync sends them with the compacted chunk list
            os.utime(fd, ns=(before.st_atime_ns, before.st_mtime_ns))
            os.fsync(fd)
        return done
    finally:
        os.close(fd)
