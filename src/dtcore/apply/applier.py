"""Applies ops beneath a target path, in order, with the guide's retry rules.

Paths come from the peer and go through :class:`dtcore.apply.safe_paths.SafeRoot`, so no
op can touch anything outside the target path.  A write that fails for a
reason that may pass (disk full, file in use, access denied, ...) is retried
every ``TGRetryLocked`` seconds, at most ``TGExecutionRetryLimit`` times (0:
until it works), with events 4110-4113 while retrying, 4120 when a retry
worked and 4150 when the op is given up; a given-up op leaves the target
needing a remirror."""
from __future__ import annotations

import errno
import mmap
import os
import shutil
import stat
import threading
from typing import Callable

from dtcore._native import _checksum, _smallfiles
from dtcore.apply.safe_paths import SafeRoot
from dtcore.control.events import emit
from dtcore.control.stats import Counters
from dtcore.errors import InvalidPathError, StreamError
from dtcore.model import xattrs
from dtcore.model.ops import LINK_ROOTED, Attrs, Op, OpKind, decode_patch
from dtcore.model.paths import check_path

# Failures no retry can cure; ENOENT counts once a fresh lookup confirmed it
# (an op on a path that is not there would otherwise block the stream forever).
_PERMANENT = {errno.EISDIR, errno.ENOTDIR, errno.EINVAL, errno.ENAMETOOLONG, errno.EEXIST,
              errno.ENOTEMPTY, errno.EXDEV, errno.ELOOP, errno.EFBIG, errno.ENOENT, errno.ENXIO,
              errno.ENOTSUP, errno.E2BIG, errno.ERANGE}
_EVENT = {errno.ENOSPC: 4110, errno.EDQUOT: 4110, errno.EBUSY: 4111, errno.ETXTBSY: 4111,
          errno.EACCES: 4112, errno.EPERM: 4112}
_IS_ROOT = os.geteuid() == 0


class Applier:
    """Applies op lists to one target path."""

    def __init__(self, root: SafeRoot, counters: Counters | None = None, *,
                 retry_delay: float = 3, retry_limit: int = 0,
                 move_deleted_to: SafeRoot | None = None,
                 stopping: threading.Event | None = None,
                 on_gave_up: Callable[[bytes, OSError], None] | None = None,
                 on_retry: Callable[[bytes, OSError, int], None] | None = None,
                 on_missed: Callable[[bytes], None] | None = None,
                 stale: set[bytes] | None = None) -> None:
        self.root = root
        self.counters = counters
        self.retry_delay = retry_delay
        self.retry_limit = retry_limit
        self.move_deleted_to = move_deleted_to
        self.stopping = stopping or threading.Event()
        self.on_gave_up = on_gave_up
        self.on_retry = on_retry
        self.on_missed = on_missed
        # paths with an op given up since their last SETATTR (shared by every
        # applier of one stream)
        self.stale = stale if stale is not None else set()
        self._fd_path: bytes | None = None
        self._fd = -1
        # a path found missing is no failure (the op's effect is already
        # there, or a running mirror brings the file): see Session
        self.tolerant = False

    # -- the open file of consecutive writes ---------------------------------
    def _file(self, path: bytes) -> int:
        if self._fd_path != path:
            self.release()
            self._fd = self._open_regular(path, os.O_WRONLY | os.O_CREAT, 0o600)
            self._fd_path = path
        return self._fd

    def _open_regular(self, path: bytes, flags: int, mode: int) -> int:
        """A regular file at ``path`` opened for writing: a link, a FIFO, a
        device or a folder found there is removed first (the source has a
        file there)."""
        try:
            fd = self.root.open(path, flags, mode, create_dirs=True)
        except (InvalidPathError, IsADirectoryError):
            fd = -1
        except OSError as e:
            if e.errno != errno.ENXIO:  # ENXIO: a FIFO nobody reads
                raise
            fd = -1
        if fd >= 0:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                return fd
            os.close(fd)
        self._make_room(path)
        return self.root.open(path, flags, mode, create_dirs=True)

    def release(self) -> None:
        """Close the file kept open between writes."""
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._fd_path = -1, None

    def close(self) -> None:
        self.release()

    # -- applying ----------------------------------------------------------
    def apply(self, ops: list[Op] | list[tuple]) -> int:
        """Apply ops in order; returns how many were applied (the rest of a
        list is never skipped: a bad path raises InvalidPathError, a bad
        patch StreamError, and the caller drops the connection)."""
        ops = ops if isinstance(ops, list) else list(ops)
        i, n = 0, len(ops)
        # new files' runs (CREATE, writes, SETATTR) go to C, a run at a time;
        # whatever it leaves, this applier takes with its rules
        fast = not self.stale
        while i < n:
            if fast and ops[i][0] == OpKind.CREATE:
                self.release()
                self.root.refresh()
                i = _smallfiles.apply_runs(self.root.fd, ops, i, self.root.reserved or b"", _IS_ROOT)
                if i == n:
                    break
            self._with_retries(ops[i])
            i += 1
            fast = not self.stale
        self.release()
        return n

    def _with_retries(self, op: Op | tuple) -> None:
        tries = 0
        stale_checked = False
        path = op[3]
        while True:
            try:
                self.root.refresh()
                self._apply_one(op)
                if tries:
                    emit(4120, path=os.fsdecode(path), retries=tries)
                return
            except OSError as e:
                self.release()
                if isinstance(e, FileNotFoundError) and not tries and not stale_checked:
                    # a cached folder handle may point at a folder removed behind
                    # our back: look the path up afresh before counting a retry
                    stale_checked = True
                    self.root.forget()
                    continue
                if self.tolerant and isinstance(e, FileNotFoundError):
                    self._missed(op)
                    return
                if e.errno in _PERMANENT or (
                        self.retry_limit and tries >= self.retry_limit) or self.stopping.is_set():
                    self._give_up(path, tries, e)
                    return
                tries += 1
                if self.counters is not None:
                    self.counters.add("Retries")
                event = _EVENT.get(e.errno or 0, 4113)
                fields = dict(path=os.fsdecode(path), retries=tries)
                if event == 4113:
                    fields["reason"] = e.strerror or str(e)
                emit(event, **fields)
                if self.on_retry is not None:
                    self.on_retry(path, e, tries)
                if self.stopping.wait(self.retry_delay):
                    self._give_up(path, tries, e)
                    return

    def _missed(self, op: Op | tuple) -> None:
        """A tolerated op found nothing at its path: the name it would have
        left (a rename's new one) is reported, since the source may have it
        and a running mirror may have passed it by.  A removal that finds
        nothing left nothing to bring."""
        kind, path, data = op[0], op[3], op[5]
        if self.on_missed is None or kind in (OpKind.DELETE, OpKind.RMDIR):
            return
        self.on_missed(bytes(data) if kind == OpKind.RENAME else bytes(path))

    def _give_up(self, path: bytes, tries: int, e: OSError) -> None:
        emit(4150, path=os.fsdecode(path), retries=tries)
        first = path not in self.stale  # one report for a file's transfer
        self.stale.add(path)
        if self.counters is not None:
            self.counters.add("OpsDropped")
        if first and self.on_gave_up is not None:
            self.on_gave_up(path, e)

    def _apply_one(self, op: Op | tuple) -> None:
        kind, _, _, path, arg, data = op
        if kind == OpKind.WRITE:
            fd = self._file(path)
            view = memoryview(data)
            while view:
                n = os.pwrite(fd, view, arg)
                view, arg = view[n:], arg + n
        elif kind == OpKind.CREATE:
            self.release()
            self._fd = self._open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                          arg & 0o7777 or 0o600)
            self._fd_path = path
        elif kind == OpKind.TRUNCATE:
            os.ftruncate(self._file(path), arg)
        elif kind == OpKind.SETATTR and path in self.stale:
            # a transfer ends with its SETATTR: one whose op was given up keeps
            # the copy's own time, so a difference mirror by attributes finds it
            self.stale.discard(path)
            self.release()
        elif kind == OpKind.SETATTR:
            if self._fd_path == path:  # the file just written: no path lookups
                self.set_fd_attrs(self._fd, Attrs.unpack(bytes(data)))
                self.release()
            else:
                self.release()
                self._setattr(path, Attrs.unpack(bytes(data)))
        elif kind == OpKind.XATTR:
            self.release()
            dfd, name = self.root.parent(path)
            # through the folder's descriptor: no path outside the root is walked
            xattrs.write(b"/proc/self/fd/%d/%s" % (dfd, name), xattrs.unpack(data))
        elif kind == OpKind.MKDIR:
            self.release()
            dfd, name = self.root.parent(path, create=True)
            try:
                os.mkdir(name, arg & 0o7777 or 0o755, dir_fd=dfd)
            except FileExistsError:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    os.unlink(name, dir_fd=dfd)
                    os.mkdir(name, arg & 0o7777 or 0o755, dir_fd=dfd)
        elif kind == OpKind.DELETE:
            self.release()
            self._delete(path)
        elif kind == OpKind.RMDIR:
            self.release()
            dfd, name = self.root.parent(path)
            try:
                os.rmdir(name, dir_fd=dfd)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno != errno.ENOTEMPTY:
                    raise
                # the folder left the set whole on the source (moved out):
                # everything it held goes with it
                shutil.rmtree(name, dir_fd=dfd)
            # after the removal: forgetting closes dfd, and a cached handle of
            # the folder removed must not serve a folder made later at its name
            self.root.forget()
        elif kind == OpKind.RENAME:
            self.release()
            src_dfd, src = self.root.parent(path)
            dst_dfd, dst = self.root.parent(bytes(data), create=True)
            try:
                os.rename(src, dst, src_dir_fd=src_dfd, dst_dir_fd=dst_dfd)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
                    raise
                # the source's rename succeeded, so what is in the way here is
                # a copy the source no longer has (a watcher may have sent
                # the new place whole before the rename)
                self._make_room(bytes(data))
                src_dfd, src = self.root.parent(path)
                dst_dfd, dst = self.root.parent(bytes(data), create=True)
                os.rename(src, dst, src_dir_fd=src_dfd, dst_dir_fd=dst_dfd)
            self.root.forget()
        elif kind == OpKind.SYMLINK:
            self.release()
            text = bytes(data)
            if arg & LINK_ROOTED:
                check_path(text)  # a rooted link names a path inside the set
                text = os.path.join(os.fsencode(self.root.path), text)
            self._make_room(path)
            dfd, name = self.root.parent(path, create=True)
            os.symlink(text, name, dir_fd=dfd)
        elif kind == OpKind.LINK:
            self.release()
            src_dfd, src = self.root.parent(bytes(data))
            self._make_room(path)
            dst_dfd, dst = self.root.parent(path, create=True)
            os.link(src, dst, src_dir_fd=src_dfd, dst_dir_fd=dst_dfd, follow_symlinks=False)
        elif kind == OpKind.PATCH:
            self.release()
            self._patch(path, arg, memoryview(data))
        else:  # the batch scan already refuses unknown kinds
            raise StreamError(f"op kind {kind} cannot be applied")

    def _make_room(self, path: bytes) -> None:
        """Remove whatever sits where a new file or link goes: a special file,
        a link, or a folder with all it holds (the source has a file there
        now), the folder removed through descriptors so that no link swapped
        in can lead the removal outside the root."""
        dfd, name = self.root.parent(path, create=True)
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=dfd)
            self.root.forget()  # cached handles of folders below it are gone
        else:
            os.unlink(name, dir_fd=dfd)

    @staticmethod
    def set_fd_attrs(fd: int, attrs: Attrs) -> None:
        """Owner (as root), mode and times of an open file or folder."""
        if attrs.mask & Attrs.OWNER and _IS_ROOT:
            os.fchown(fd, attrs.uid, attrs.gid)
        if attrs.mask & Attrs.MODE:
            os.fchmod(fd, attrs.mode & 0o7777)
        if attrs.mask & Attrs.TIMES:
            os.utime(fd, ns=(attrs.atime_ns, attrs.mtime_ns))

    def _setattr(self, path: bytes, attrs: Attrs) -> None:
        dfd, name = self.root.parent(path)
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        link = stat.S_ISLNK(st.st_mode)
        if attrs.mask & Attrs.OWNER and (_IS_ROOT or (attrs.uid, attrs.gid) != (st.st_uid, st.st_gid)):
            try:
                os.chown(name, attrs.uid, attrs.gid, dir_fd=dfd, follow_symlinks=False)
            except PermissionError:
                if _IS_ROOT:
                    raise  # without root, owners are kept as they are (like rsync without -o)
        if attrs.mask & Attrs.MODE and not link:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
            try:
                os.fchmod(fd, attrs.mode & 0o7777)
            finally:
                os.close(fd)
        if attrs.mask & Attrs.TIMES:
            os.utime(name, ns=(attrs.atime_ns, attrs.mtime_ns), dir_fd=dfd, follow_symlinks=False)

    def _delete(self, path: bytes) -> None:
        dfd, name = self.root.parent(path)
        if self.move_deleted_to is not None:
            mdfd, mname = self.move_deleted_to.parent(path, create=True)
            try:
                os.rename(name, mname, src_dir_fd=dfd, dst_dir_fd=mdfd)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
            # another file system: copy, then delete
            src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                dst = self.move_deleted_to.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                                create_dirs=True)
                try:
                    _copy_range(src, dst, 0, 0, os.fstat(src).st_size)
                finally:
                    os.close(dst)
            finally:
                os.close(src)
        try:
            os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass

    def _patch(self, path: bytes, size: int, data: memoryview) -> None:
        """Rebuild a file from its current copy and a rolling delta, into a
        temporary file that replaces it only when its hash matches."""
        insns, want, literals = decode_patch(data, path)
        dfd, name = self.root.parent(path)
        tmp = b"." + name[:200] + b".dtpatch"
        old = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        new = -1
        try:
            old_size = os.fstat(old).st_size
            if size > old_size + len(literals):  # nothing written before this check
                raise StreamError(f"patch for {path!r} would build {size} bytes from a copy of "
                                  f"{old_size} and {len(literals)} literal bytes")
            new = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o600, dir_fd=dfd)
            out = lit = 0
            for offset, length in insns.tolist():
                if length < 0 or out + length > size:
                    raise StreamError(f"patch for {path!r} writes past {size} bytes")
                if offset == -1:
                    if lit + length > len(literals):
                        raise StreamError(f"patch for {path!r} runs out of literal bytes")
                    _write_all(new, literals[lit:lit + length], out)
                    lit += length
                elif 0 <= offset and offset + length <= old_size:
                    _copy_range(old, new, offset, out, length)
                else:
                    raise StreamError(f"patch for {path!r} copies outside the old file")
                out += length
            if out != size or lit != len(literals):
                raise StreamError(f"patch for {path!r} builds {out} of {size} bytes")
            if _file_hash(new, size) != want:
                raise StreamError(f"patched {path!r} does not match the source's hash")
            st = os.fstat(old)
            os.fchmod(new, stat.S_IMODE(st.st_mode))
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            if new >= 0:
                try:
                    os.unlink(tmp, dir_fd=dfd)
                except OSError:
                    pass
            raise
        finally:
            os.close(old)
            if new >= 0:
                os.close(new)


def _file_hash(fd: int, size: int) -> int:
    if size == 0:
        return _checksum.xxh3_64(b"")
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
        return _checksum.xxh3_64(m)


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _copy_range(src: int, dst: int, src_off: int, dst_off: int, length: int) -> None:
    while length > 0:
        n = os.copy_file_range(src, dst, length, src_off, dst_off)
        if n == 0:
            raise StreamError("the old file ended while a patch was copying from it")
        src_off, dst_off, length = src_off + n, dst_off + n, length - n
