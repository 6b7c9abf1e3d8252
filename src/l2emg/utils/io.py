"""Atomic file writes: a crash mid-write never leaves a half-written file behind."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np

from l2emg.errors import DataError


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_DEFAULT_FILE_MODE = _default_file_mode()


def publish_temp_file(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temporary file (mkstemp makes them 0600) the usual permissions and rename it
    over `path` in one step."""
    os.chmod(tmp, _DEFAULT_FILE_MODE)
    os.replace(tmp, path)


_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_OS_ERROR_PATH = re.compile(r'at path "([^"]*)"')


def os_error_of(err: BaseException) -> OSError | None:
    """`err` as an OSError when it is a failed file operation, else None.

    An OSError is returned as is; safetensors' `SafetensorError` (raised by `save_file` when the
    disk is full or read-only) carries the errno only in its message ("… (os error 28) at path …")
    and becomes the OSError it stands for.
    """
    if isinstance(err, OSError):
        return err
    if type(err).__name__ == "SafetensorError":
        code = _OS_ERROR.search(str(err))
        if code is not None:
            where = _OS_ERROR_PATH.search(str(err))
            number = int(code.group(1))
            return OSError(number, os.strerror(number), where.group(1) if where else None)
    return None


def renamed_os_error(err: OSError, path: str | os.PathLike) -> OSError:
    """The same failure, naming `path` (the file the user knows) instead of a temporary file."""
    if err.errno is None:
        return OSError(errno.EIO, str(err), str(path))
    return OSError(err.errno, err.strerror or os.strerror(err.errno), str(path))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to a temporary file in the same folder, fsync, then rename over `path`.

    A failed write (disk full, read-only folder, `path` is a folder, …) raises an OSError naming
    `path`, not the temporary file."""
    path = Path(path)
    tmp, prefix = None, f".{path.name}."
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish_temp_file(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and (err.filename is None or _is_temp_of(err.filename, path, prefix)):
            raise renamed_os_error(err, path) from err
        raise


def _is_temp_of(filename: Any, path: Path, prefix: str) -> bool:
    """Whether a failed operation's file is one of `path`'s temporary files (`.NAME.xxxx.tmp` beside it)."""
    if not isinstance(filename, (str, bytes, os.PathLike)):
        return False
    failed = Path(os.fsdecode(filename))
    return failed.parent == path.parent and failed.name.startswith(prefix) and failed.name.endswith(".tmp")


def atomic_save_dir(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Run `write(staging)` into the sibling staging folder `.<name>.partial`, make it durable, then
    rename it onto `target` (an existing `target` is replaced).

    A staging folder left by a killed process (SIGKILL, power loss) is removed before writing, and
    a Python exception inside `write` removes it too: `target` is either the old folder or the
    complete new one, never a mix. A failed write inside the staging folder (disk full, read-only,
    also safetensors' own error for it) raises an OSError naming `target` (or its file), not the
    staging folder, which no longer exists.
    """
    target = Path(target)
    staging = target.parent / f".{target.name}.partial"
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        write(staging)
        os.sync()  # every staged file is on disk before the folder becomes visible under its name
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
    except Exception as err:
        failed = os_error_of(err)
        name = None if failed is None else _target_name(failed.filename, staging, target)
        if name is None:  # not a file operation, or one on a file outside the staging folder
            raise
        raise renamed_os_error(failed, name) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def _target_name(filename: Any, staging: Path, target: Path) -> Path | None:
    """The file a failed write inside `staging` was meant to become (`target` itself for the folder,
    temporary files and failures that name no file, e.g. from a worker process); None when the
    failure names a file outside the staging folder."""
    if filename is None:
        return target
    if not isinstance(filename, (str, bytes, os.PathLike)):
        return None
    try:
        relative = Path(os.fsdecode(filename)).relative_to(staging)
    except ValueError:
        return target if Path(os.fsdecode(filename)) == target else None
    if not relative.parts or any(part.startswith(".") for part in relative.parts):
        return target
    return target / relative


def remove_leftovers(folder: str | os.PathLike, skip: Path | None = None) -> list[Path]:
    """Delete what killed atomic writes left under `folder` (`.<name>.<random>.tmp` files of
    `atomic_write_bytes`, `.<name>.partial` / `.<name>.old-<id>` folders of `atomic_save_dir`).

    Call it only while no other process writes into `folder` (under its lock); `skip` is a subfolder
    others may be writing (left alone). Returns what was removed.
    """
    removed = []
    for path in sorted(Path(folder).rglob(".*")):
        name = path.name
        if skip is not None and path.is_relative_to(skip):
            continue
        if path.is_file() and name.endswith(".tmp"):
            path.unlink(missing_ok=True)
        elif path.is_dir() and (name.endswith(".partial") or ".old-" in name):
            shutil.rmtree(path, ignore_errors=True)
        else:
            continue
        removed.append(path)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_text(path: str | os.PathLike, what: str = "a text file", error: type[ValueError] = DataError) -> str:
    """The UTF-8 text of `path`; `error` (a ValueError) naming the file when it is a folder or not
    UTF-8 text. A missing file raises FileNotFoundError as usual."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder, expected {what}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); expected {what}") from err


def load_json(path: str | os.PathLike) -> Any:
    """A JSON file; DataError (a ValueError) naming the file when it is not UTF-8 JSON."""
    path = Path(path)
    text = read_text(path, "a JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Load a .npy file without ever unpickling objects."""
    return np.load(path, allow_pickle=False)
