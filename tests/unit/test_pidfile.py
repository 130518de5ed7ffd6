"""A pid file is believed only while its process runs and looks like the one we started."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from vcapp.pidfile import live_pid


def test_a_running_process_with_the_expected_command_line_is_found(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(tmp_path)])
    try:
        (tmp_path / "x.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 10
        while str(tmp_path).encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():  # exec not done yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert live_pid(tmp_path / "x.pid", "python", str(tmp_path)) == proc.pid
        assert live_pid(tmp_path / "x.pid", "caddy", str(tmp_path)) is None  # the pid is someone else's
    finally:
        proc.kill()
        proc.wait()
    assert live_pid(tmp_path / "x.pid", "python", str(tmp_path)) is None  # gone: the file is stale


def test_a_missing_or_garbled_pid_file_names_no_process(tmp_path):
    assert live_pid(tmp_path / "none.pid", "x") is None
    (tmp_path / "bad.pid").write_text("not a pid")
    assert live_pid(tmp_path / "bad.pid", "x") is None
