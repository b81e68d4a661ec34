"""Reading and writing FAQ files for ``manage.py kbase_import`` / ``kbase_export``.

Accepted input (``fmt`` ``auto`` picks by extension, then by content):

* **CSV** with a header: the question in ``question`` or ``q``, the answer in ``answer`` or
  ``a``, optional ``category`` and ``id`` / ``external_id`` columns (UTF-8, a BOM is fine);
* **JSON**: a list of objects, or an object holding that list under ``questions``, ``items``,
  ``faq`` or ``data`` (as the ``zaragoza-construction-faq`` files do);
* **JSONL**: one object per line.

An object's question is ``question`` / ``q`` / ``instruction``, its answer ``answer`` / ``a`` /
``output``, plus optional ``category`` and ``id`` / ``external_id``. Each row is reported with its
line number (CSV, JSONL) or its position in the list (JSON, 1-based).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUESTION_KEYS = ("question", "q", "instruction")
ANSWER_KEYS = ("answer", "a", "output")
ID_KEYS = ("external_id", "id")
LIST_KEYS = ("questions", "items", "faq", "data")


@dataclass
class Row:
    """One FAQ record read from a file; ``where`` says where (``line 12`` / ``item 3``)."""

    where: str
    question: Any
    answer: Any
    category: Any = None
    external_id: Any = ""
    error: str | None = None


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in obj and obj[key] not in (None, ""):
            return obj[key]
    return None


def _from_object(obj: Any, where: str) -> Row:
    if not isinstance(obj, dict):
        return Row(where, None, None, error="not an object")
    row = Row(
        where,
        _first(obj, QUESTION_KEYS),
        _first(obj, ANSWER_KEYS),
        obj.get("category"),
        _first(obj, ID_KEYS) or "",
    )
    if row.question is None or row.answer is None:
        row.error = "a question and an answer are required"
    return row


def detect(path: Path, fmt: str) -> str:
    """``csv``, ``json`` or ``jsonl`` for ``path`` (``fmt`` other than ``auto`` wins).
    ``ValueError`` when it cannot tell."""
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".csv", ".json", ".jsonl"):
        return suffix[1:]
    if suffix == ".ndjson":
        return "jsonl"
    head = path.read_text(encoding="utf-8-sig", errors="replace")[:2000].lstrip()
    if head.startswith(("[", "{")):
        return "jsonl" if head.startswith("{") and "\n{" in head else "json"
    raise ValueError(f"cannot tell the format of {path}; give --format")


def read(path: Path, fmt: str) -> Iterator[Row]:
    """The rows of the file; a row that cannot be used has ``error`` set (the rest go on).
    ``ValueError`` for a file that is not valid JSON/CSV as a whole."""
    fmt = detect(path, fmt)
    raw = path.read_text(encoding="utf-8-sig")
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(raw))
        fields = {f.strip().lower() for f in reader.fieldnames or []}
        if not fields & {"question", "q"} or not fields & {"answer", "a"}:
            raise ValueError("the CSV needs a question (or q) and an answer (or a) column")
        for record in reader:
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in record.items()}
            yield _from_object(row, f"line {reader.line_num}")
    elif fmt == "jsonl":
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Row(f"line {number}", None, None, error=f"not JSON ({exc.msg})")
                continue
            yield _from_object(obj, f"line {number}")
    elif fmt == "json":
        data = json.loads(raw)
        if isinstance(data, dict):
            data = next((data[k] for k in LIST_KEYS if isinstance(data.get(k), list)), None)
        if not isinstance(data, list):
            raise ValueError("the JSON must be a list of objects (or hold one under 'questions')")
        for number, obj in enumerate(data, start=1):
            yield _from_object(obj, f"item {number}")
    else:
        raise ValueError(f"unknown format {fmt!r}")


def write(rows: list[dict[str, Any]], path: Path, fmt: str) -> None:
    """Write FAQ rows (``id``, ``category``, ``question``, ``answer``) as CSV, JSON or JSONL,
    readable again by :func:`read`."""
    if fmt == "csv":
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["id", "category", "question", "answer"])
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "json":
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
    else:
        raise ValueError(f"unknown format {fmt!r}")
