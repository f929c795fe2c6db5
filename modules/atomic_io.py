"""Crash-safe file replacement: a reader sees the old file or the new one, never a partial one.

The bytes go to a temporary file in the target's directory (same filesystem, so the rename is atomic),
which is flushed and fsynced, renamed over the target, and then the directory itself is fsynced so the
rename survives a power cut. Temporary names start with "." and end in ".tmp", so they never match the
globs that find checkpoints or outputs, and `remove_stale_temporaries` can clear what a killed process left.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from modules.errors import UserError

TEMP_SUFFIX = ".tmp"


class UnwritableError(UserError):
    """A folder the user named for results cannot be created or written."""


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# mkstemp creates 0600; a replaced file gets the usual permissions (0666 less the umask, read once at import:
# os.umask is process-wide, so reading it on every write would race with other threads).
FILE_MODE = 0o666 & ~_umask()


def fsync_directory(directory: str | Path) -> None:
    """Make renames and unlinks in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:       # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_writable_folder(folder: str | Path, what: str) -> Path:
    """Create `folder` if needed and check that a file can be written there, before any heavy work starts.
    `what` names it for the user ("--output", "the run directory"); UnwritableError says what to do."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UnwritableError(f"{what} {folder} is a file, not a folder: give a folder for the results")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UnwritableError(f"{what} {folder} cannot be written ({reason}): choose a folder you can write to") \
            from None
    return folder


@contextmanager
def removed_if_left_empty(folder: str | Path) -> Iterator[None]:
    """Around a run that may create `folder` (and missing parents): those of them that did not exist before and
    are still empty afterwards are removed, so a run that wrote nothing leaves nothing behind."""
    created, path = [], Path(folder).absolute()
    while not path.exists() and path != path.parent:
        created.append(path)    # deepest first
        path = path.parent
    try:
        yield
    finally:
        for path in created:
            try:
                path.rmdir()     # only if empty
            except OSError:
                break


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None],
                 before_commit: Callable[[], None] | None = None, *, replace: bool = True) -> Path:
    """Write `path` through `write(file)`; on any error (a full disk included) the target is untouched and
    the temporary file is removed. `before_commit` runs after the data is durable, before the rename.
    With replace=False an existing `path` is never replaced: FileExistsError, even if it appeared meanwhile."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        if before_commit is not None:
            before_commit()
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)    # fails if path exists: no check-then-write race
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporary files that a killed writer left in `directory`; returns them."""
    stale = [p for p in Path(directory).glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
