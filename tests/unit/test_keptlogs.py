"""Output of removed containers kept on their machine (runtime/keptlogs.py): written, listed
per instance and time, bounded in age and count."""

import pytest

from runtime import keptlogs

pytestmark = pytest.mark.unit


def test_kept_output_is_listed_oldest_first_per_instance_and_since(tmp_path):
    keptlogs.save(tmp_path, "blog", "0", "1.0", "vc-blog-0-r1.0", ["a", "b"], now=100.0)
    keptlogs.save(tmp_path, "blog", "worker-1", "1.0", "vc-blog-worker-1-r1.0", ["w"], now=200.0)
    keptlogs.save(tmp_path, "blog", "0", "2.0", "vc-blog-0-r2.0", ["c"], now=300.0)
    assert [(k.instance, k.release, k.ended) for k in keptlogs.listing(tmp_path, "blog")] == \
        [("0", "1.0", 100.0), ("worker-1", "1.0", 200.0), ("0", "2.0", 300.0)]
    assert [k.release for k in keptlogs.listing(tmp_path, "blog", instance="0")] == ["1.0", "2.0"]
    assert [k.ended for k in keptlogs.listing(tmp_path, "blog", since=150.0)] == [200.0, 300.0]
    assert keptlogs.lines(keptlogs.listing(tmp_path, "blog")[0]) == ["a", "b"]
    assert keptlogs.listing(tmp_path, "shop") == []


def test_only_the_last_lines_the_newest_files_and_a_day_are_kept(tmp_path):
    many = (f"line {i}" for i in range(keptlogs.KEEP_LINES * 3))
    keptlogs.save(tmp_path, "blog", "0", "1.0", "c", many, now=0.0)
    (kept,) = keptlogs.listing(tmp_path, "blog")
    text = keptlogs.lines(kept)
    assert len(text) == keptlogs.KEEP_LINES and text[-1] == f"line {keptlogs.KEEP_LINES * 3 - 1}"
    for i in range(keptlogs.KEEP_FILES + 5):
        keptlogs.save(tmp_path, "blog", "0", "1.0", f"c{i}", ["x"], now=10.0 + i)
    assert len(keptlogs.listing(tmp_path, "blog")) == keptlogs.KEEP_FILES
    keptlogs.save(tmp_path, "blog", "0", "1.0", "late", ["x"], now=100.0 + keptlogs.KEEP_S)
    assert [k.path.name.endswith("late.log") for k in keptlogs.listing(tmp_path, "blog")] == [True]
