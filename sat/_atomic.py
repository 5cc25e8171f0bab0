"""Atomic file writes: a temporary file beside the target, then one rename.

A reader (or a crash) never sees a partial file. The temporary file is created by
``tempfile.mkstemp`` (mode 0600); before the rename it gets the mode a plain ``open``
would have given (0666 minus the process umask, :func:`default_mode`), so outputs stay
readable as usual.

Example:
    >>> import pathlib, tempfile
    >>> from sat._atomic import atomic_write
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_write(target, lambda tmp: pathlib.Path(tmp).write_text("hi"))
    >>> target.read_text()
    'hi'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from sat.errors import InputError

__all__ = ["atomic_write", "atomic_write_bytes", "check_writable", "default_mode"]


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it (threads may be writing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)  # elsewhere: set and restore (briefly visible to other threads)
    os.umask(umask)
    return umask


def default_mode(*, directory: bool = False) -> int:
    """The mode ``open`` (0666) or ``mkdir`` (0777) gives under the process umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def atomic_write(path: str | Path, write: Callable[[str], object], *, suffix: str = ".part") -> None:
    """Call ``write(tmp)`` on a temporary path next to ``path``, then rename it to ``path``.

    Args:
        path: the final file; its folder is created when missing.
        write: writes the whole file to the temporary path it is given.
        suffix: suffix of the temporary name (some writers pick the format from it, e.g.
            ``".nii.gz"``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def check_writable(directory: str | Path) -> None:
    """Fail early, in one line, when files cannot be created in ``directory`` (or, when it does not
    exist yet, in the nearest existing folder above it, where it would be created). Leaves nothing behind.

    Raises:
        InputError: a path component is a file, or the folder is not writable.
    """
    target = Path(directory).expanduser()
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"cannot create {target}: {probe} is a file; choose another output folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".sat-write-test-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise InputError(f"cannot write to {target} ({err.strerror or err}); choose a folder you can write to") from None
