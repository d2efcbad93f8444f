"""Replacing a file whole, so that a reader finds the old contents or the
new ones, never a part, and a crash leaves one or the other."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


def replace_whole(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a side file beside ``path``, sync it, and rename it
    over ``path``."""
    import tempfile  # with shutil, bz2 and lzma behind it: not for every command's start
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
