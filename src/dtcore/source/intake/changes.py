"""What a file watcher reports, whichever kernel interface it reads: one
:class:`Change` per thing that happened, in the order it happened, with
absolute paths as they were at that moment."""
from __future__ import annotations

import enum
from typing import Any, NamedTuple


class Kind(enum.IntEnum):
    CREATE = 1      # a new entry (file, folder, link, special file)
    DELETE = 2      # an entry removed
    MOVE = 3        # an entry renamed; ``new`` is where it went (None: out of sight)
    MOVE_IN = 4     # an entry arrived from outside what is watched
    MODIFY = 5      # a file's data changed
    CLOSED = 6      # a file open for writing was closed: its data is settled for now
    ATTRIB = 7      # mode, owner, times or link count changed
    OVERFLOW = 8    # events were lost; everything beneath ``path`` must be compared
    IGNORED = 9     # the interface can no longer see ``path`` (a watch was lost)


class Change(NamedTuple):
    kind: Kind
    path: bytes
    new: bytes | None = None
    is_dir: bool = False
    # the watcher's handle of the object (fanotify: its file handle), or None
    # when only the path names it
    obj: Any = None

