"""Filesystem situations for tests: a folder nobody can write to, root included."""
from __future__ import annotations

import os
from pathlib import Path


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder path that cannot be created or written: a read-only folder for a normal user; for root (whom
    permissions do not stop) a path under /sys, which is read-only for everyone."""
    if os.geteuid() == 0:
        return Path("/sys/seedvc-test-unwritable")
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "out"
