"""Durable SQLite commits without holding the write lock through the fsync.

A worker's connection commits with `synchronous=NORMAL` in WAL mode: SQLite writes the group's
frames to the WAL and returns without an fsync (it still syncs around checkpoints). This thread
then fdatasyncs the WAL file, which makes every frame written before the call as durable as
`synchronous=FULL` would have (FULL is one fdatasync of the same file after the commit frame).
The worker answers and acknowledges a group only once a sync that began after its COMMIT has
returned, so nothing is acknowledged that a power cut could lose; meanwhile it already reads and
handles the next group, and another worker already holds the write lock.

One fdatasync covers every commit before it: while one runs, later commits wait for the next,
so a busy worker syncs about once per group or less.
"""
from __future__ import annotations

import os
import threading
from typing import Optional

__all__ = ["WalSync", "SyncError"]


class SyncError(RuntimeError):
    """The WAL could not be made durable: what it holds must not be acknowledged."""


class WalSync:
    def __init__(self, wal_path: str):
        self.path = wal_path
        self._fd: Optional[int] = None
        self._cond = threading.Condition()
        self.committed = 0    # commits made on the connection (sequence numbers, from 1)
        self.synced = 0       # every commit up to this one is durable
        self.error: Optional[BaseException] = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="wal-sync", daemon=True)
        self._thread.start()

    def committed_one(self) -> int:
        """Called after each COMMIT: its sequence number, for done() and wait()."""
        with self._cond:
            self.committed += 1
            self._cond.notify_all()
            return self.committed

    def done(self, seq: int) -> bool:
        """Whether commit `seq` is durable (no lock: the int is written whole under the GIL)."""
        if self.synced >= seq:
            return True
        if self.error is not None:
            raise SyncError(f"WAL sync failed: {self.error}")
        return False

    def wait(self, seq: int, timeout: Optional[float] = None) -> bool:
        with self._cond:
            if not self._cond.wait_for(lambda: self.synced >= seq or self.error is not None, timeout):
                return False
        return self.done(seq)

    def close(self) -> None:
        """Sync what is committed, then stop the thread and close the file."""
        try:
            self.wait(self.committed, timeout=30)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join(30)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self.committed > self.synced or self._closed)
                if self.committed <= self.synced:
                    return  # closed with nothing left to sync
                target = self.committed
            try:
                self._sync()
            except BaseException as exc:  # noqa: B902 - any failure: a thread that died silently
                # would leave the worker waiting forever. After a failed fsync Linux may have
                # dropped the dirty pages: whatever the WAL holds is unknown, so nothing from here
                # on is acknowledged (the worker exits and the broker redelivers to a fresh one).
                with self._cond:
                    self.error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self.synced = target
                self._cond.notify_all()

    def _sync(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
            # As SQLite does for a WAL it created: the file's directory entry must survive too.
            d = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
            try:
                os.fsync(d)
            finally:
                os.close(d)
        os.fdatasync(self._fd)
