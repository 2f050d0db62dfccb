"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

The recipe (the classic POSIX one, e.g. in the `rename(2)` man page and SQLite's "atomic commit" notes):

    1. write the new content to a temporary file in the SAME directory (same file system),
    2. flush the Python buffer and `fsync` the file, so its bytes are on disk,
    3. `os.replace(temp, path)`, an atomic rename that swaps the directory entry in one step,
    4. `fsync` the directory (POSIX), so the rename itself survives a power cut.

If anything fails before step 3 the temporary file is deleted and `path` keeps its old content (or stays
absent).
Temporary files are named `.<name>.<random>.tmp`: hidden, so globs such as `part-*.parquet` never see them.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened, e.g. Windows).

    Example:
        >>> import tempfile
        >>> fsync_directory(tempfile.mkdtemp())
    """
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces `path` atomically when the `with` block ends without error.

    The temporary file lives next to `path` and is created with the process umask (unlike `mkstemp`'s 0600),
    so the final file has ordinary permissions. On an exception inside the block, the temporary file is
    removed and `path` is left untouched.

    Args:
        path: the destination file; its directory must exist.
        mode: "wb" (binary) or "w" (UTF-8 text).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
        >>> with atomic_open(target, "w") as f:
        ...     _ = f.write("hello")
        >>> target.read_text()
        'hello'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode: expected one of 'wb', 'w', got {mode!r}")
    path = Path(path)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_directory(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically (see the module docstring).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "blob.bin"
        >>> atomic_write_bytes(target, b"\\x00\\x01")
        >>> target.read_bytes()
        b'\\x00\\x01'
    """
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "status"
        >>> atomic_write_text(target, "done\\n")
        >>> target.read_text()
        'done\\n'
    """
    with atomic_open(path, "w") as handle:
        handle.write(text)


def _json_default(obj: Any) -> Any:
    """Turn NumPy scalars/arrays, one-element-or-more tensors and paths into plain JSON values."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def to_json(obj: Any) -> str:
    """Serialise `obj` as indented JSON; NumPy/torch numbers become plain numbers, NaN and inf are kept.

    NaN and +-inf are written as the (non-standard but Python-readable) tokens `NaN`, `Infinity`, because a
    diverged measurement is a result, not an error.

    Example:
        >>> import numpy as np
        >>> to_json({"lr": np.float32(0.5), "ok": np.bool_(True)})
        '{\\n  "lr": 0.5,\\n  "ok": true\\n}'
    """
    return json.dumps(obj, indent=2, default=_json_default)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as JSON (see `to_json`) to `path` atomically.

    Example:
        >>> import json, tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "meta.json"
        >>> atomic_write_json(target, {"seed": 0})
        >>> json.loads(target.read_text())
        {'seed': 0}
    """
    atomic_write_text(path, to_json(obj) + "\n")
