"""Write output files all or nothing, and never over a file the command read.

Targets are checked before any work is done (an existing folder, a regular file or a new
name, not an input, not named twice); contents are written to temporary files beside
their targets and renamed into place only when every one was written, so a failure or
Ctrl-C leaves no partial output behind.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import InputError


def check_targets(targets: list[str], inputs: list[str]) -> None:
    """Raise InputError for a target that cannot be written or would clobber an input."""
    read = {_identity(path) for path in inputs}
    seen = set()
    for target in targets:
        path = Path(target)
        if _identity(target) in seen:
            raise InputError(target, "", "one output per file; two options name this one")
        seen.add(_identity(target))
        if _identity(target) in read:
            raise InputError(target, "", "a new file, not one of this command's inputs (it would be overwritten)")
        if not path.parent.is_dir():
            raise InputError(target, "", f"a path in an existing folder ({path.parent} does not exist)")
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            raise InputError(target, "", "a regular file to write, not a folder, pipe or device")


def write_all(contents: dict[str, str | bytes]) -> None:
    """Write every file or none: temporary files first, renamed into place at the end; if a
    rename fails or is interrupted, the new files already renamed are removed again."""
    temporaries: list[tuple[str, str]] = []
    created: list[str] = []
    target = ""
    try:
        for target, text in contents.items():
            handle, temporary = tempfile.mkstemp(dir=Path(target).parent, prefix=f".{Path(target).name}.")
            temporaries.append((temporary, target))
            os.fchmod(handle, _mode(target))  # mkstemp's 0600 would hide the files from the team
            with (os.fdopen(handle, "wb") if isinstance(text, bytes) else os.fdopen(handle, "w", encoding="utf-8")) as file:
                file.write(text)
        for temporary, target in temporaries:
            existed = os.path.lexists(target)
            os.replace(temporary, target)
            created += [] if existed else [target]
    except BaseException as error:
        for path in created:
            os.unlink(path)
        if isinstance(error, OSError):
            raise InputError(target, "", f"a writable location ({error.strerror or error})") from None
        raise
    finally:
        for temporary, _ in temporaries:
            if os.path.lexists(temporary):
                os.unlink(temporary)


def _mode(target: str) -> int:
    """The permissions a written file gets: those of the file it replaces, else the usual ones under
    the process's umask (launch scripts executable)."""
    if os.path.exists(target):
        return stat.S_IMODE(os.stat(target).st_mode)
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if target.endswith(".sh") else 0o666) & ~mask


def _identity(path: str) -> str:
    return os.path.realpath(path)
