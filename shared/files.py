"""Writing output files safely: never through a planted symlink, never half-written, errors in one line.

Every file the project writes for a user (a batch export, an import's rejects file) goes through
`atomic_write`:

* The content is written to a new temporary file in the target's own directory, created with
  O_CREAT|O_EXCL|O_NOFOLLOW (mkstemp), so nothing anyone planted there is opened or followed.
* It is flushed and fsynced, then moved over the target with `os.replace`, which replaces a
  directory entry (a symlink at the target is replaced, its target is never written). A reader
  sees the old file or the whole new one, never a partial one; a failure leaves no temp file.
* Without `overwrite`, an existing target (a file, a directory, a dangling symlink) is refused:
  the check is made up front and again at the end with `os.link`, which fails if the name
  appeared meanwhile, so a file created between the two is not clobbered either.
* OSError is turned into `OutputFileError`, whose message names the path and the cause in one
  line (missing folder, permission denied, disk full, ...).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from shared.errors import OutputFileError

_CAUSES = {
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EEXIST: "it already exists (use --force to replace it)",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EFBIG: "the file is too large for this file system",
    errno.EIO: "input/output error",
}


def describe(exc: OSError) -> str:
    """The cause of an OSError in a few words, without a traceback or a repr."""
    if exc.errno in _CAUSES:
        return _CAUSES[exc.errno]
    return exc.strerror or type(exc).__name__


def _refuse_existing(path: Path) -> None:
    if os.path.lexists(path):
        kind = "a symlink" if path.is_symlink() else "a folder" if path.is_dir() else "a file"
        raise OutputFileError(path, f"{kind} with that name already exists (use --force to replace it)",
                              errno.EEXIST)


@contextlib.contextmanager
def atomic_write(path: Path, *, overwrite: bool = False, encoding: str = "utf-8",
                 newline: str | None = "") -> Iterator[IO[str]]:
    """A text handle whose content becomes `path` when the block ends without an exception.

    Raises OutputFileError (one line) for an existing target without `overwrite`, a missing
    folder, a permission problem, a full disk, ...; the target is then left as it was.
    """
    path = Path(path)
    if not overwrite:
        _refuse_existing(path)
    folder = path.parent
    if not folder.is_dir():
        raise OutputFileError(path, _CAUSES[errno.ENOENT if not folder.exists() else errno.ENOTDIR])
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputFileError(path, describe(exc), exc.errno) from None
    temp = Path(temp_name)
    try:
        try:
            with os.fdopen(fd, "w", encoding=encoding, newline=newline) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o666 & ~_UMASK)  # mkstemp made it 0600: give it a new file's usual mode
            if overwrite:
                os.replace(temp, path)
            else:
                _link_exclusive(temp, path)
        except OSError as exc:
            raise OutputFileError(path, describe(exc), exc.errno) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _link_exclusive(temp: Path, path: Path) -> None:
    try:
        os.link(temp, path)  # fails with EEXIST if the name appeared meanwhile: never clobber
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        _refuse_existing(path)  # a file system without hard links: check again, then move
        os.replace(temp, path)
    else:
        temp.unlink()


def _read_umask() -> int:
    # os.umask can only be read by setting it: done once, at import, not while threads write files.
    current = os.umask(0o022)
    os.umask(current)
    return current


_UMASK = _read_umask()
