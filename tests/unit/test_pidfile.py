"""A pid file is believed only while its process runs and looks like the one we started."""

from __future__ import annotations

import subprocess
import sys

from vcapp.pidfile import live_pid


def test_a_running_process_with_the_expected_command_line_is_found(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(tmp_path)])
    try:
        (tmp_path / "x.pid").write_text(f"{proc.pid}\n")
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
