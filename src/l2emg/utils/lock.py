"""An exclusive, crash-safe lock on a folder: one process at a time writes a run (or a method run).

    with FolderLock(run_dir / ".lock", "run folder"):
        ...   # a second process gets BusyError naming this process

The lock is an `flock` on a small file holding the holder's PID, host, command and start time. The
kernel releases it when the holder exits or is killed, so the lock of a dead process is simply taken
over by the next one (its stale file is overwritten); nothing has to be cleaned by hand.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from l2emg.errors import BusyError


class FolderLock:
    def __init__(self, path: str | Path, what: str = "folder"):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """What the lock file says about its (last) holder; {} when unreadable."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = self.holder()
            who = f"process {info.get('pid', '?')}"
            if info.get("host") and info.get("host") != socket.gethostname():
                who += f" on {info['host']}"
            since = f" since {info['started']}" if info.get("started") else ""
            raise BusyError(f"{self.path.parent}: this {self.what} is in use by {who}{since} "
                            f"({info.get('command', 'l2emg')}); wait for it to finish or stop it") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "command": " ".join(["l2emg", *sys.argv[1:]])[:300]}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
