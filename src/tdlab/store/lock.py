"""One writer per run: an exclusive OS file lock on `<run>/lock`, held for as long as the writer lives.

Two processes writing one run lose rows: resuming truncates the metric chunks back to the last checkpoint
(`tdlab.store.run`), deleting chunks a live writer has just written. So a writer first takes the run's lock,
an exclusive `fcntl.flock` on the file `<run>/lock`, and keeps that file open while it writes. The lock belongs
to the open file, so it is released when the writer releases it, when its file is garbage collected, or when
its process dies in any way (SIGKILL, a crash, a power cut): a dead owner never blocks a run. A stale lock
(its owner dead) is therefore simply free, and the next writer takes it over with the same atomic `flock` call.

The owner writes its host, pid and start time into the lock file, for the error message of the process that
finds the run taken (`RunBusyError`): `run: ... is in use by host h, pid 4242 (since ...)`. The lock file is
never deleted or replaced (a new file would be a second lock), and its content stays after a release, naming
the last owner.

Ownership is per process: a process that already holds a run's lock gets it again at once (the lock counts its
holders and is released with the last), so two `Run` objects of one run in one process, e.g. a failed ensemble's
member and the same member resumed alone, do not lock each other out.

`flock` is advisory (it binds only processes that take it, as every tdlab writer does) and works on local file
systems and on NFS (Linux emulates it there with byte-range locks).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

LOCK_FILE = "lock"


@dataclass(frozen=True)
class Owner:
    """The process that holds (or last held) a run's lock, as recorded in the lock file."""

    host: str
    pid: int
    since: str

    @property
    def process(self) -> str:
        """`host <host>, pid <pid>`."""
        return f"host {self.host}, pid {self.pid}"

    def __str__(self) -> str:
        return f"{self.process} (since {self.since})"

    def is_this_process(self) -> bool:
        """Whether the recorded owner is the calling process."""
        return self.host == socket.gethostname() and self.pid == os.getpid()


class RunBusyError(ValueError):
    """The run is owned by another live process; `owner` is its recorded host and pid (None if unreadable)."""

    def __init__(self, path: str | os.PathLike[str], owner: Owner | None) -> None:
        self.path = Path(path)
        self.owner = owner
        who = str(owner) if owner is not None else "another process"
        super().__init__(f"run: {self.path} is in use by {who}; wait for it to end, or stop it to take the run over")


@dataclass
class _Held:
    fd: int
    pid: int
    holders: int


_HELD: dict[tuple[int, int], _Held] = {}  # (st_dev, st_ino) of a lock file -> this process's hold on it
_GUARD = threading.Lock()  # guards _HELD against threads of this process


class RunLock:
    """A hold on one run's lock; take it with `RunLock.acquire(run directory)`, give it back with `release`.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with RunLock.acquire(folder) as lock:
        ...     read_owner(folder).pid == os.getpid()
        True
    """

    def __init__(self, key: tuple[int, int]) -> None:
        self._key: tuple[int, int] | None = key

    @classmethod
    def acquire(cls, directory: str | os.PathLike[str]) -> Self:
        """Take the lock of the run directory `directory` without waiting; RunBusyError if a live process has it.

        The lock file is created if missing (runs written before locks existed have none).
        """
        with _GUARD:
            return cls(_take(Path(directory)))

    @property
    def held(self) -> bool:
        """True until `release`."""
        return self._key is not None

    def release(self) -> None:
        """Give the hold back; the lock is freed with this process's last hold (calling it twice is harmless)."""
        key, self._key = self._key, None
        if key is None:
            return
        with _GUARD:
            held = _HELD.get(key)
            if held is None or held.pid != os.getpid():  # a forked child does not own its parent's runs
                return
            held.holders -= 1
            if held.holders == 0:
                del _HELD[key]
                os.close(held.fd)  # closing the file releases the flock

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit modules may be gone; the OS frees the lock anyway
            self.release()


def _take(directory: Path) -> tuple[int, int]:
    """Lock `directory/lock` for this process (or count one more hold) and return its key; see `RunLock.acquire`."""
    path = directory / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino)
        held = _HELD.get(key)
        if held is not None and held.pid == os.getpid():
            os.close(fd)
            held.holders += 1
            return key
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunBusyError(directory, read_owner(directory)) from None
        if _names(path, stat):
            break
        # the file was removed or replaced between open and flock (its run deleted): lock what is there now
        os.close(fd)
    record = {"host": socket.gethostname(), "pid": os.getpid(), "since": datetime.now(UTC).isoformat()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    _HELD[key] = _Held(fd, os.getpid(), 1)
    return key


def _names(path: Path, stat: os.stat_result) -> bool:
    """Whether `path` is still the file described by `stat`."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (stat.st_dev, stat.st_ino)


def read_owner(directory: str | os.PathLike[str], attempts: int = 20) -> Owner | None:
    """The owner recorded in the lock file of `directory` (the live one, or the last one); None if there is none.

    A new owner writes its record just after taking the lock, so an empty or partial record is read again a few
    times (about 50 ms each) before giving up.
    """
    path = Path(directory) / LOCK_FILE
    for attempt in range(attempts):
        try:
            record = json.loads(path.read_bytes())
            return Owner(str(record["host"]), int(record["pid"]), str(record["since"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            if attempt + 1 < attempts:
                time.sleep(0.05)
    return None
