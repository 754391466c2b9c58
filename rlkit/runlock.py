"""Run-directory ownership: one training at a time writes a run directory.

The lock is an ``flock`` on ``RUN_DIR/lock``, which also names its holder (pid, host, start time) for the message a
second training gets. The kernel drops an ``flock`` when its process dies, however it dies (SIGKILL, a crash), so
the file a killed run leaves behind is a stale lock that the next training simply takes over. Where the file
system has no ``flock`` (some network mounts), the holder's pid is checked instead on the same host.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from rlkit.errors import UserError

LOCK_NAME = "lock"


class RunLock:
    """Held while a process owns ``run_dir``; :meth:`release` (or leaving a ``with`` block) gives it up.

    Raises:
        UserError: another live process holds the directory.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.took_over: dict | None = None
        """What a stale lock said about its dead holder, when this one replaced it."""
        self._fd: int | None = None
        while self._fd is None:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                raise UserError(f"cannot write the run directory {self.run_dir} ({error.strerror or error}): pick "
                                "another --run-dir") from None
            try:
                previous = _read_holder(fd)
                if not _flock(fd, previous):
                    raise UserError(f"{self.run_dir} is in use by another training ({_describe(previous)}): wait for "
                                    "it to end or pick another --run-dir")
                # The previous holder may have removed the file between our open and our lock: lock the new one.
                if not _same_file(fd, self.path):
                    os.close(fd)
                    continue
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            if previous:
                self.took_over = previous  # the holder died without releasing (a kill): its lock was stale
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(holder) + "\n").encode(), 0)

    def release(self) -> None:
        """Remove the lock file, then unlock (in that order, so no one locks a file about to disappear)."""
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink()
        except OSError:
            pass  # the directory is gone or read-only now: closing below still releases the lock
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(run_dir: str | Path) -> bool:
    """Whether a live process holds ``run_dir``'s lock (a training runs there now), judged as :class:`RunLock`
    judges it: a stale file left by a killed run does not count. Takes nothing: the probe is a shared lock held
    for an instant, so a training starting at that very instant could be refused once."""
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False  # no lock file: released, or never taken
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            return not _flock(fd, _read_holder(fd))  # no flock here: the holder's pid decides
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _flock(fd: int, holder: dict) -> bool:
    """Lock ``fd``; False when a live process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    # No flock here: the holder's pid decides (only on the same host can we tell whether it runs).
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int):
        return True  # no holder written (or garbage): nobody to wait for
    if host != socket.gethostname():
        return False  # cannot tell from here whether it still runs
    return pid == os.getpid() or not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _read_holder(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _describe(holder: dict) -> str:
    if not holder:
        return f"see its {LOCK_NAME} file"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
