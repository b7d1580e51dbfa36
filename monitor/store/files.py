"""Files the monitor keeps private: owner-only whatever the umask, looser existing ones reported.

The state database and the events file hold job names, user names and failure messages, so
what the monitor creates is ``0600`` (files) and ``0700`` (directories). The mode is given to
the creating call itself and then set exactly with ``fchmod``/``chmod``: the umask can only take
bits away, so no file is ever readable by others, not even between the two calls, and no
process-wide umask is changed behind other threads' backs.

A file that already exists is the operator's: its mode is left as it is, and a looser one
(group or other bits set) is reported once by whoever opens it (``file_mode_loose``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from monitor.logs import get_logger

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

log = get_logger("monitor.files")


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each ``0700``; existing ones are not touched."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR)
        except FileExistsError:
            if directory.is_dir():  # made by someone else meanwhile: theirs, as it is
                continue
            raise
        os.chmod(directory, PRIVATE_DIR)


def open_private(path: Path, flags: int) -> tuple[int, int | None]:
    """Open ``path`` with ``flags`` (without ``O_CREAT``), creating it ``0600`` if missing.

    Returns the descriptor and, when the file already existed as a regular file with group or
    other bits set, its mode (for the caller to report once); ``None`` otherwise. Devices and
    pipes (``/dev/stdout``) are opened as they are.
    """
    while True:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        except FileExistsError:
            pass
        else:
            try:
                os.fchmod(fd, PRIVATE_FILE)
            except OSError:
                os.close(fd)
                raise
            return fd, None
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            continue  # removed between the two calls (log rotation): create it after all
        info = os.fstat(fd)
        mode = stat.S_IMODE(info.st_mode)
        loose = stat.S_ISREG(info.st_mode) and bool(mode & 0o077)
        return fd, mode if loose else None


def loose_mode(path: Path) -> int | None:
    """The mode of an existing regular file readable or writable by others, else ``None``."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    mode = stat.S_IMODE(info.st_mode)
    return mode if stat.S_ISREG(info.st_mode) and mode & 0o077 else None


def report_loose(path: Path, mode: int) -> None:
    """The one log line for an existing file that others may read (left as it is)."""
    log.warning(
        "file_mode_loose",
        path=str(path),
        mode=f"{mode:04o}",
        note="left as it is; it holds job names, users and failure messages: chmod 600 it",
    )
