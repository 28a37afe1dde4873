"""Built-in housekeeping handlers: ``maintenance:cleanup_files`` and ``maintenance:sqlite_backup``.

Both are plain synchronous functions called by the runner as ``function(params)`` in a
fresh child process; they return a JSON-serialisable dict (the run's ``result``) and raise
``ValueError`` with a ``<handler>: '<param>' ...`` message for bad parameters.
"""

from __future__ import annotations

import fnmatch
import os
import sqlite3
import stat
import tempfile
import time
from typing import Any

from _handler_common import Params

__all__ = ["cleanup_files", "sqlite_backup"]

# The result is stored in the run history: list at most this many paths and count the rest,
# so cleaning a directory of a million files does not produce a 100 MB result row.
MAX_LISTED = 1000

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def cleanup_files(params: dict[str, Any]) -> dict[str, Any]:
    """Delete regular files under ``path`` not modified for ``older_than_days`` days.

    Params:
        path (str, required): the directory to clean; relative to the task's working directory.
            It may itself be a symlink to a directory.
        glob (str, default "*"): shell pattern matched against each file *name*
            (case-sensitive, so no "/"); ``"*.log.*"``.
        older_than_days (number, required): minimum age by modification time; fractions allowed.
        recursive (bool, default false): descend into subdirectories.
        dry_run (bool, default false): report what would be deleted, delete nothing.

    Symlinks inside ``path`` are never followed and never deleted, and every directory is
    opened relative to its parent with ``O_NOFOLLOW``, so a directory swapped for a symlink
    mid-walk cannot lead the walk out of the tree. Directories are never removed, nor are
    sockets, FIFOs or devices. A file that vanishes meanwhile is skipped; one that cannot be
    deleted is reported in ``errors`` and fails the run (``success: false``) after the rest
    is done.

    Returns ``{"deleted": [paths], "count", "bytes", "dry_run", "errors", "success"}`` (plus
    ``error``, a summary, when ``errors`` is not empty); ``deleted`` lists at most 1000 paths
    (``deleted_truncated`` says when more were deleted).
    """
    p = Params(
        "cleanup_files", params, {"path", "glob", "older_than_days", "recursive", "dry_run"}
    )
    root = os.path.abspath(p.string("path"))
    pattern = str(p.string("glob", "*"))
    if "/" in pattern:
        raise p.error("glob", "matches file names and cannot contain '/'; use 'path' and 'recursive'")
    days = float(p.number("older_than_days"))
    recursive = p.boolean("recursive", False)
    dry_run = p.boolean("dry_run", False)
    if os.path.realpath(root) == "/":
        raise p.error("path", "must not be the root directory")

    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        raise p.error("path", f"{root} does not exist") from None
    except NotADirectoryError:
        raise p.error("path", f"{root} is not a directory") from None

    walk = _Cleanup(pattern, time.time() - days * 86400, recursive, dry_run)
    try:
        walk.directory(root_fd, root)
    finally:
        os.close(root_fd)

    result: dict[str, Any] = {
        "deleted": walk.deleted[:MAX_LISTED],
        "count": walk.count,
        "bytes": walk.bytes,
        "dry_run": dry_run,
        "errors": walk.errors[:MAX_LISTED],
        "success": not walk.errors,
    }
    if walk.count > MAX_LISTED:
        result["deleted_truncated"] = True
    if walk.errors:
        # The runner quotes "error" when a handler returns success=false.
        noun = "path" if len(walk.errors) == 1 else "paths"
        result["error"] = f"{len(walk.errors)} {noun} could not be cleaned up: {walk.errors[0]}"
    return result


class _Cleanup:
    """One cleanup walk's settings and tallies."""

    def __init__(self, pattern: str, cutoff: float, recursive: bool, dry_run: bool) -> None:
        self.pattern = pattern
        self.cutoff = cutoff
        self.recursive = recursive
        self.dry_run = dry_run
        self.deleted: list[str] = []
        self.errors: list[str] = []
        self.count = 0
        self.bytes = 0

    def directory(self, dir_fd: int, dir_path: str) -> None:
        try:
            with os.scandir(dir_fd) as it:
                entries = list(it)
        except OSError as exc:
            self.errors.append(f"{dir_path}: {exc.strerror}")
            return
        for entry in entries:
            path = os.path.join(dir_path, entry.name)
            try:
                self._entry(dir_fd, entry, path)
            except FileNotFoundError:
                continue  # removed meanwhile (logrotate, another cleanup): nothing to do
            except OSError as exc:
                self.errors.append(f"{path}: {exc.strerror}")

    def _entry(self, dir_fd: int, entry: os.DirEntry[str], path: str) -> None:
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            if self.recursive:
                # O_NOFOLLOW: if the directory was replaced by a symlink since scandir, the open
                # fails (ELOOP) instead of following it out of the tree.
                sub_fd = os.open(entry.name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
                try:
                    self.directory(sub_fd, path)
                finally:
                    os.close(sub_fd)
            return
        if not stat.S_ISREG(st.st_mode):
            return  # symlinks, sockets, FIFOs, devices are left alone
        if not fnmatch.fnmatchcase(entry.name, self.pattern) or st.st_mtime >= self.cutoff:
            return
        if not self.dry_run:
            # unlink never follows a symlink, and dir_fd pins the directory we checked.
            os.unlink(entry.name, dir_fd=dir_fd)
        self.count += 1
        self.bytes += st.st_size
        if len(self.deleted) < MAX_LISTED:
            self.deleted.append(path)


def sqlite_backup(params: dict[str, Any]) -> dict[str, Any]:
    """Copy a live SQLite database consistently with SQLite's online backup API.

    Params:
        source (str, required): the database file; it is never created or modified.
        destination (str, required): the backup file, or an existing directory to put a file
            of the source's name in. Its directory must exist.

    The copy is written to a temporary file next to the destination, flushed to disk, then
    renamed over it, so the destination is always either the old backup or the complete new
    one, never a torn file. The backup file is created with mode 0600 (a database dump is
    as sensitive as the database). Returns ``{"source", "destination", "bytes"}``.
    """
    p = Params("sqlite_backup", params, {"source", "destination"})
    source = os.path.abspath(p.string("source"))
    destination = os.path.abspath(p.string("destination"))
    if not os.path.isfile(source):
        raise p.error("source", f"{source} is not an existing file")
    if os.path.isdir(destination):
        destination = os.path.join(destination, os.path.basename(source))
    dest_dir = os.path.dirname(destination)
    if not os.path.isdir(dest_dir):
        raise p.error("destination", f"directory {dest_dir} does not exist")
    if os.path.exists(destination) and os.path.samefile(source, destination):
        raise p.error("destination", "is the source database itself")

    # Checked above that the file exists, because connect() would otherwise create an empty
    # database. A source we may only read is opened read-only by SQLite automatically.
    src = sqlite3.connect(source, timeout=30)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(destination)}.", suffix=".tmp", dir=dest_dir
        )
        os.close(fd)
        try:
            dst = sqlite3.connect(tmp)
            try:
                # pages=-1 (the default) copies in one step under a read transaction: with a
                # WAL source writers carry on meanwhile; stepping in chunks would restart the
                # copy after every concurrent write and might never finish on a busy database.
                src.backup(dst)
            finally:
                dst.close()
            _fsync_path(tmp)
            os.replace(tmp, destination)
            _fsync_path(dest_dir)  # make the rename itself durable
        except BaseException:
            _remove_quietly(tmp)
            raise
    except sqlite3.DatabaseError as exc:
        raise RuntimeError(f"sqlite_backup: cannot back up {source}: {exc}") from exc
    finally:
        src.close()
    return {"source": source, "destination": destination, "bytes": os.path.getsize(destination)}


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    for leftover in (path, path + "-journal", path + "-wal", path + "-shm"):
        try:
            os.unlink(leftover)
        except FileNotFoundError:
            continue
