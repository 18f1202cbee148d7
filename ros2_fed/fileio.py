"""Atomic file writes with ordinary permissions.

Why: ``tempfile.mkstemp`` and safetensors' ``save_file`` create files with mode 0600, so a
checkpoint, engine or report written by one user (the build account, CI) is unreadable by
another (the node's service account on the vehicle). Everything we write gets the mode a plain
``open(path, "w")`` would give (0666 minus the umask), and is renamed into place so a reader
never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


def default_mode() -> int:
    """0666 minus the process umask (read without changing it for other threads)."""
    try:
        with open("/proc/self/status") as status:  # Linux: no umask race
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def make_shareable(path: PathLike) -> None:
    """Give ``path`` the permissions a plain ``open(path, "w")`` would have."""
    os.chmod(path, default_mode())


def temporary_sibling(path: PathLike) -> Path:
    """An empty temporary file next to ``path`` (same file system, so ``os.replace`` is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=path.stem + ".", suffix=".tmp" + path.suffix, dir=path.parent
    )
    os.close(fd)
    make_shareable(tmp)
    return Path(tmp)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling + rename."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file's contents, read in 1 MiB chunks (checkpoints and engines are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
