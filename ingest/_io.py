"""Writing folders and files so that nothing half-written is ever left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class NotOurs(ValueError):
    """A target folder holds something Cadence did not write; the message names it."""


def check_replaceable(target: Path, *, force: bool = False) -> None:
    """A raw-data target may be replaced only when it is missing, empty or a folder Cadence
    wrote (it holds `manifest.json`): `staged_dir` replaces it whole, and must never take a
    user's unrelated files with it. `force` replaces a foreign folder all the same; a file is
    never replaced."""
    target = Path(target)
    if not target.exists():
        return
    if not target.is_dir():
        raise NotOurs(f"{target} is a file, not a folder; name a folder")
    if force or not any(target.iterdir()) or (target / "manifest.json").exists():
        return
    shown = ", ".join(sorted(p.name for p in target.iterdir())[:5])
    raise NotOurs(
        f"{target} holds files Cadence did not write ({shown}); it would be replaced whole. "
        "Name an empty or new folder, or pass --force to replace it"
    )


@contextlib.contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Yields an empty folder beside `target`; on success it replaces `target` whole.

    On an exception the staged folder is deleted and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.staged-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staged.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    try:
        staged.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_table_atomic(path: Path, table: pa.Table) -> None:
    """Writes one Parquet file through a temporary sibling and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Writes a text file through a temporary sibling and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
