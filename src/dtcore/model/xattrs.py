"""Extended attributes (ExtendedAttributes 1): a file's whole set of names
and values, read on one side and packed as an XATTR op's data::

    count u32 | (name_len u16 | value_len u32 | name | value) * count

The set replaces the other side's: a name it lacks is removed there.  As
root every namespace travels (user, trusted, security, and the ACLs kept
as system.posix_acl_*); otherwise only what this user may read."""
from __future__ import annotations

import errno
import os
import struct

from dtcore.errors import StreamError

_COUNT = struct.Struct("<I")
_ITEM = struct.Struct("<HI")
# the file system keeps none, or none of this kind of entry
_UNSUPPORTED = {errno.ENOTSUP, errno.EOPNOTSUPP}


def read(path: str | bytes) -> dict[bytes, bytes]:
    """The extended attributes of ``path`` (a link's own, not its target's)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in _UNSUPPORTED:
            return {}
        raise
    out = {}
    for name in names:
        try:
            out[os.fsencode(name)] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:  # removed meanwhile, or not ours to read
            if e.errno not in (errno.ENODATA, errno.EPERM, errno.EACCES, *_UNSUPPORTED):
                raise
    return out


def pack(attrs: dict[bytes, bytes]) -> bytes:
    parts = [_COUNT.pack(len(attrs))]
    for name, value in sorted(attrs.items()):
        parts += [_ITEM.pack(len(name), len(value)), name, value]
    return b"".join(parts)


def unpack(data: bytes | memoryview) -> dict[bytes, bytes]:
    """The set in an XATTR op; malformed data raises StreamError."""
    data = bytes(data)
    try:
        (count,), at = _COUNT.unpack_from(data), _COUNT.size
        out = {}
        for _ in range(count):
            n, v = _ITEM.unpack_from(data, at)
            at += _ITEM.size
            name, value = data[at:at + n], data[at + n:at + n + v]
            if len(name) != n or len(value) != v or not n or b"\0" in name:
                raise ValueError
            out[name] = value
            at += n + v
    except (struct.error, ValueError):
        raise StreamError("an XATTR op's data is malformed") from None
    if at != len(data):
        raise StreamError("an XATTR op's data has bytes past its last attribute")
    return out


def write(path: str | bytes, wanted: dict[bytes, bytes]) -> None:
    """Make ``path``'s extended attributes exactly ``wanted``."""
    have = read(path)
    for name in have.keys() - wanted.keys():
        os.removexattr(path, name, follow_symlinks=False)
    for name, value in wanted.items():
        if have.get(name) != value:
            os.setxattr(path, name, value, follow_symlinks=False)
