"""Files written so that nothing is ever half there: one atomic-write helper for the package.

Every writer in speculum (shards, manifests, checkpoints, models, result tables, reports)
goes through :func:`atomic_path`: the data are written to a temporary file in the target's
folder (same file system, so the rename is atomic), flushed to disk, and renamed over the
target; on any error the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = [
    "TEMP_PATTERNS",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "remove_stale_temps",
    "sha256_file",
]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The temporary name keeps the target's suffixes (writers such as astropy choose the
    format and compression from them, e.g. ``.fits.gz``) and starts with a dot, so a
    folder listing never shows it as a result.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "table.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode())


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


#: Temporary files of :func:`speculum._files.atomic_path` (``.tmp-PID-HEX-NAME``) and of
#: speculum before it (``.NAME.PID.tmp``); group ``pid`` is the writer's process id.
TEMP_PATTERNS = (re.compile(r"^\.tmp-(?P<pid>\d+)-[0-9a-f]+-.+$"), re.compile(r"^\..+\.(?P<pid>\d+)\.tmp$"))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder`` (not recursive).

    A file is removed when its name matches :data:`TEMP_PATTERNS` and the process that
    wrote it no longer runs, so writers still at work in the folder keep theirs.

    Returns:
        The removed paths.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        m = next((m for p in TEMP_PATTERNS if (m := p.match(path.name))), None)
        if m is None or not path.is_file() or _alive(int(m["pid"])):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("%s: removed %d temporary file(s) of interrupted writers", folder, len(removed))
    return removed
