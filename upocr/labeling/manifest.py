"""Manifest files of a label folder: append-only JSON lines, one fsynced line per record.

``manifest.jsonl`` (and ``manifest.rank<R>.jsonl`` of a multi-process run) hold one record per
line; within a file the later line wins, between files the later ``time``. Readers ignore a
truncated last line (a crash mid-write). A lock file serialises appends against merges.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from ..io import atomic_write_text

MANIFEST_NAME = "manifest.jsonl"
_RANK_MANIFEST = re.compile(r"^manifest\.rank(\d+)\.jsonl$")
_LOCK_NAME = ".manifest.lock"



def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time_key(record: dict) -> float:
    value = record.get("time")
    if not isinstance(value, str):
        return float("-inf")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return float("-inf")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _manifest_files(output_dir: Path) -> list[tuple[int, Path]]:
    """``(order, path)`` of every manifest file: the main one (0), then rank files (rank + 1)."""
    files: list[tuple[int, Path]] = []
    main = output_dir / MANIFEST_NAME
    if main.is_file():
        files.append((0, main))
    try:
        names = os.listdir(output_dir)
    except OSError:
        names = []
    for name in names:
        match = _RANK_MANIFEST.match(name)
        if match:
            files.append((int(match.group(1)) + 1, output_dir / name))
    files.sort()
    return files


def _parse_lines(data: bytes) -> Iterator[dict]:
    """Records in complete lines of ``data``; lines that are not JSON records are ignored."""
    for raw in data.split(b"\n"):
        raw = raw.strip()
        if not raw:
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and isinstance(record.get("file"), str) and isinstance(record.get("status"), str):
            yield record


def _complete_part(data: bytes) -> bytes:
    """``data`` up to and including its last newline (a truncated last line is left out)."""
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


@contextmanager
def _manifest_lock(output_dir: Path, exclusive: bool) -> Iterator[None]:
    """Appenders share this lock; merging holds it alone. A no-op where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(output_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _append_line(path: Path, line: bytes) -> None:
    """Append one full line with a single write, then fsync. If the file ends in a truncated
    line (a crash mid-write), a newline is written first so the new record stays readable."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = os.write(fd, line)
        while written < len(line):  # only for very unusual file systems
            written += os.write(fd, line[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def _latest_per_file(records: Iterable[tuple[int, dict]]) -> dict[str, tuple[float, int, dict]]:
    """Fold ``(order, record)`` pairs, each manifest file's lines in order, into the winner per
    source file: later lines win within a file, the later time wins between files."""
    per_file: dict[tuple[int, str], dict] = {}
    for order, record in records:
        per_file[(order, record["file"])] = record
    winners: dict[str, tuple[float, int, dict]] = {}
    for (order, rel), record in per_file.items():
        key = (_time_key(record), order)
        current = winners.get(rel)
        if current is None or key >= current[:2]:
            winners[rel] = (key[0], key[1], record)
    return winners


def read_manifest_records(output_dir: str | os.PathLike) -> dict[str, dict]:
    """The latest record of every source file, from all manifest files in ``output_dir``."""
    folder = Path(output_dir)
    pairs: list[tuple[int, dict]] = []
    for order, path in _manifest_files(folder):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        pairs.extend((order, record) for record in _parse_lines(_complete_part(data)))
    return {rel: item[2] for rel, item in _latest_per_file(pairs).items()}


def merge_manifests(output_dir: str | os.PathLike) -> int:
    """Fold every ``manifest.rank<R>.jsonl`` into ``manifest.jsonl`` and delete them.

    The new ``manifest.jsonl`` holds one line per source file (its latest record), ordered by
    time, and replaces the old one atomically; rank files are deleted only after that. Run it
    after every process of a run has finished. Returns the number of records kept.
    """
    folder = Path(output_dir)
    with _manifest_lock(folder, exclusive=True):
        files = _manifest_files(folder)
        pairs: list[tuple[int, dict]] = []
        for order, path in files:
            pairs.extend((order, record) for record in _parse_lines(_complete_part(path.read_bytes())))
        winners = _latest_per_file(pairs)
        ordered = sorted(winners.values(), key=lambda item: (item[0], item[1], item[2]["file"]))
        text = "".join(_record_line(item[2]).decode("utf-8") for item in ordered)
        if files or text:
            atomic_write_text(folder / MANIFEST_NAME, text)
        for order, path in files:
            if order > 0:
                path.unlink(missing_ok=True)
    return len(ordered)


def _record_line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n").encode("utf-8")


@dataclass
class _ManifestState:
    order: int
    ident: tuple[int, int]
    offset: int = 0


