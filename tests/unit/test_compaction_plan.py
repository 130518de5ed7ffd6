"""Which ranges of a volume's files the compactor rewrites (storage/compaction.py, pure)."""

from __future__ import annotations

import os
import stat

import pytest

from storage import compaction
from storage.compaction import BLOCK, Rewrite, plan, plan_file

pytestmark = pytest.mark.unit

MIB = 1 << 20


def appended(n: int, record: int = 40, start: int = 0) -> list[dict]:
    """The chunks of a file appended to `n` times, one fsync each."""
    return [{"offset": start + i * record, "size": record} for i in range(n)]


def entry(path: str, chunks: list[dict], size: int, mode: int = 0o644, **extra) -> dict:
    return {"FullPath": path, "Mode": mode, "FileSize": size, "chunks": chunks, **extra}


def test_an_appended_log_past_the_threshold_is_rewritten_whole():
    assert plan_file(appended(300), 300 * 40) == ((0, 12000),)


def test_a_file_below_the_threshold_or_empty_is_left_alone():
    assert plan_file(appended(199), 199 * 40) == ()
    assert plan_file(appended(300), 0) == ()


def test_only_blocks_holding_several_chunks_are_rewritten_and_neighbours_are_joined():
    # A 10 MiB database: five whole 2 MiB chunks, then pages overwritten in blocks 1 and 2.
    base = [{"offset": b * BLOCK, "size": BLOCK} for b in range(5)]
    pages = [{"offset": BLOCK + i * 4096, "size": 4096} for i in range(150)] + \
            [{"offset": 2 * BLOCK + i * 4096, "size": 4096} for i in range(60)]
    assert plan_file(base + pages, 5 * BLOCK) == ((BLOCK, 3 * BLOCK),)


def test_the_most_fragmented_blocks_go_first_within_the_budget():
    base = [{"offset": b * BLOCK, "size": BLOCK} for b in range(8)]
    pages = [{"offset": 1 * BLOCK + i * 4096, "size": 4096} for i in range(50)] + \
            [{"offset": 6 * BLOCK + i * 4096, "size": 4096} for i in range(150)] + \
            [{"offset": 3 * BLOCK + i * 4096, "size": 4096} for i in range(100)]
    assert plan_file(base + pages, 8 * BLOCK, budget=2 * BLOCK) == ((3 * BLOCK, 4 * BLOCK), (6 * BLOCK, 7 * BLOCK))


def test_the_last_block_ends_at_the_file_size_and_chunks_past_it_count_for_nothing():
    size = BLOCK + 1000
    chunks = appended(250, 4, start=BLOCK) + [{"offset": size + 10, "size": 50}] * 10
    assert plan_file(chunks, size) == ((BLOCK, size),)


def test_plan_keeps_regular_files_under_the_root_most_chunks_first():
    root = "/volumes/shop/data"
    entries = [
        entry(f"{root}/small.log", appended(50), 2000),
        entry(f"{root}/a.log", appended(250), 10000),
        entry(f"{root}/db/wal", appended(400), 16000),
        entry(f"{root}/link", appended(300), 12000, mode=1 << 27, SymlinkTarget="/etc/shadow"),
        entry(f"{root}/fifo", appended(300), 12000, mode=1 << 25),
        entry(f"{root}/bundled", appended(300) + [{"offset": 0, "size": 1, "is_chunk_manifest": True}], 12000),
        entry("/volumes/other/data/x.log", appended(500), 20000),
    ]
    assert plan(entries, root) == [Rewrite("db/wal", ((0, 16000),), 400), Rewrite("a.log", ((0, 10000),), 250)]


def test_plan_stops_at_the_budget_but_always_takes_one_file():
    root = "/v"
    entries = [entry("/v/big", appended(300, 10000), 3_000_000), entry("/v/second", appended(250, 100), 25000)]
    assert [r.path for r in plan(entries, root, budget=1 << 20)] == ["big"]
    assert [r.path for r in plan(entries, root, budget=4 << 20)] == ["big", "second"]


def test_rewrite_keeps_bytes_and_times_and_follows_no_link(tmp_path):
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "log"
    f.write_bytes(b"".join(b"id=%d\n" % i for i in range(1000)))
    os.utime(f, ns=(1_000_000_000, 2_000_000_000))
    before = f.read_bytes()
    assert compaction.rewrite(tmp_path, Rewrite("d/log", ((0, 100), (200, 10 ** 9)), 300)) == len(before) - 100
    assert f.read_bytes() == before
    assert f.stat().st_mtime_ns == 2_000_000_000
    secret = tmp_path.parent / f"{tmp_path.name}-outside"
    secret.write_text("not the app's")
    (tmp_path / "out").symlink_to(secret)
    (tmp_path / "dirlink").symlink_to(tmp_path.parent)
    for bad in ("out", f"dirlink/{secret.name}", "../x", "d"):
        with pytest.raises(OSError):
            compaction.rewrite(tmp_path, Rewrite(bad, ((0, 5),), 300))
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError):
        compaction.rewrite(tmp_path, Rewrite("pipe", ((0, 5),), 300))
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe").st_mode)
    assert secret.read_text() == "not the app's"
