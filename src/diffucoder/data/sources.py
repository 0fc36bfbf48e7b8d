"""Read documents from directory trees, JSONL(.gz) and Parquet files; count what is skipped.

    skips = Counter()
    for doc in iter_documents([Path("corpus/")], InputConfig(), {"python"}, skips):
        print(doc.path, doc.language, len(doc.text))
    print(skips)   # e.g. {"binary": 2, "invalid_utf8": 1, "malformed_record": 3, ...}

Records follow the Stack-v2 / RefineCode layout: ``content`` (``input.text_field``),
``path``, ``language``, ``license``. Bad input never raises: an unreadable file,
binary data, invalid UTF-8 or a malformed JSONL line is skipped and counted under
its reason. Iteration order is deterministic, so a second pass yields the same
documents with the same ``doc_id`` (the curation reads its inputs more than once
instead of holding the corpus in memory).
"""
from __future__ import annotations

import fnmatch
import gzip
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from diffucoder.data.config import InputConfig
from diffucoder.data.languages import language_for_path, normalize_language

BINARY_SNIFF_BYTES = 8192
RECORD_FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".parquet")
PATH_FIELDS = ("path", "max_stars_repo_path", "file_path", "filename")
LICENSE_FIELDS = ("license", "license_type", "licenses", "detected_licenses")


@dataclass
class Document:
    doc_id: int
    path: str
    text: str
    language: str | None
    license: str | None = None


class SourceReader:
    """Shared state of one pass (or one task's slice): limits, selection and the skip counter."""

    def __init__(self, cfg: InputConfig, languages: set[str] | None, skips: Counter,
                 max_file_bytes: int | None):
        self.cfg, self.languages, self.skips = cfg, languages, skips
        self.max_file_bytes = max_file_bytes
        self.next_id = 0
        self.bytes_read = 0
        self.limit_reached = False

    def at_limit(self) -> bool:
        cfg = self.cfg
        if (cfg.max_files and self.next_id >= cfg.max_files) or \
                (cfg.max_bytes and self.bytes_read >= cfg.max_bytes):
            self.limit_reached = True
        return self.limit_reached

    def selected(self, language: str | None) -> bool:
        if language is None:
            self.skips["unknown_language"] += 1
            return False
        if self.languages and language not in self.languages:
            self.skips["language_not_selected"] += 1
            return False
        return True

    def decode(self, data: bytes) -> str | None:
        if b"\x00" in data[:BINARY_SNIFF_BYTES]:
            self.skips["binary"] += 1
            return None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            self.skips["invalid_utf8"] += 1
            return None

    def make(self, path: str, text: str, language: str, license: str | None) -> Document:
        doc = Document(self.next_id, path, text, language, license)
        self.next_id += 1
        self.bytes_read += len(text.encode("utf-8"))
        return doc


def _excluded(rel: str, patterns: list[str]) -> bool:
    slashed = "/" + rel
    return any(fnmatch.fnmatchcase(slashed, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)


@dataclass(frozen=True)
class InputFile:
    path: Path
    shown: str       # the name reports use: the input directory's name + the relative path


def _walk_files(root: Path, cfg: InputConfig, skips: Counter) -> Iterator[InputFile]:
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda _e: skips.update(
            ["unreadable"])):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        kept_dirs = []
        for name in sorted(dirnames):
            if _excluded(rel_dir + name + "/", cfg.exclude):
                skips["excluded_dirs"] += 1
            else:
                kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            rel = rel_dir + name
            if _excluded(rel, cfg.exclude):
                skips["excluded"] += 1
                continue
            yield InputFile(Path(dirpath) / name, f"{root.name}/{rel}")


def iter_input_files(roots: list[Path], cfg: InputConfig, skips: Counter) -> Iterator[InputFile]:
    """Every input file in a fixed order (sorted walk of each directory; excluded paths are
    counted in ``skips``). A JSONL/Parquet file is one entry however many records it holds."""
    for root in roots:
        if root.is_dir():
            yield from _walk_files(root, cfg, skips)
        else:
            yield InputFile(root, root.name)


def read_input_file(entry: InputFile, reader: SourceReader) -> Iterator[Document]:
    """The documents of one input file: its records, or the file itself when its language is
    selected (decided from the path, before reading)."""
    if entry.path.name.endswith(RECORD_FILE_SUFFIXES):
        yield from _read_record_file(entry.path, reader)
        return
    if not reader.selected(language_for_path(entry.shown, reader.cfg.extensions)):
        return
    if reader.at_limit():
        return
    doc = _read_source_file(entry.path, entry.shown, reader)
    if doc is not None:
        yield doc


def _read_source_file(path: Path, shown: str, reader: SourceReader) -> Document | None:
    try:
        if reader.max_file_bytes is not None and path.stat().st_size > reader.max_file_bytes:
            reader.skips["max_file_bytes"] += 1  # not read at all; reported with the size filter
            return None
        data = path.read_bytes()
    except OSError:
        reader.skips["unreadable"] += 1
        return None
    text = reader.decode(data)
    if text is None:
        return None
    return reader.make(shown, text, language_for_path(shown, reader.cfg.extensions), None)


def _record_to_document(record: object, where: str, reader: SourceReader) -> Document | None:
    if not isinstance(record, dict):
        reader.skips["malformed_record"] += 1
        return None
    text = record.get(reader.cfg.text_field)
    if isinstance(text, (bytes, bytearray)):
        text = reader.decode(bytes(text))
        if text is None:
            return None
    elif not isinstance(text, str):
        reader.skips["missing_text"] += 1
        return None
    elif "\x00" in text[:BINARY_SNIFF_BYTES]:
        reader.skips["binary"] += 1
        return None
    path = next((record[k] for k in PATH_FIELDS if isinstance(record.get(k), str)), where)
    lang = record.get("language") or record.get("lang")
    language = normalize_language(lang) if isinstance(lang, str) and lang.strip() \
        else language_for_path(path, reader.cfg.extensions)
    if not reader.selected(language):
        return None
    lic = next((record[k] for k in LICENSE_FIELDS if record.get(k)), None)
    lic = ",".join(map(str, lic)) if isinstance(lic, (list, tuple)) else (str(lic) if lic else None)
    return reader.make(path, text, language, lic)


def _read_jsonl(path: Path, reader: SourceReader) -> Iterator[Document]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for lineno, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                if reader.at_limit():
                    return
                try:
                    record = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    reader.skips["invalid_utf8"] += 1
                    continue
                except ValueError:
                    reader.skips["malformed_record"] += 1
                    continue
                doc = _record_to_document(record, f"{path.name}:{lineno}", reader)
                if doc is not None:
                    yield doc
    except (OSError, EOFError, gzip.BadGzipFile):
        reader.skips["unreadable"] += 1  # truncated gzip or I/O error: keep what was read


def _read_parquet(path: Path, reader: SourceReader) -> Iterator[Document]:
    try:
        parquet = pq.ParquetFile(path)
        wanted = {reader.cfg.text_field, "language", "lang", *PATH_FIELDS, *LICENSE_FIELDS}
        columns = [c for c in parquet.schema_arrow.names if c in wanted]
        row = 0
        for batch in parquet.iter_batches(batch_size=1024, columns=columns):
            for record in batch.to_pylist():
                row += 1
                if reader.at_limit():
                    return
                doc = _record_to_document(record, f"{path.name}:{row}", reader)
                if doc is not None:
                    yield doc
    except (OSError, pa.ArrowException):
        reader.skips["unreadable"] += 1


def _read_record_file(path: Path, reader: SourceReader) -> Iterator[Document]:
    if path.name.endswith(".parquet"):
        return _read_parquet(path, reader)
    return _read_jsonl(path, reader)


def iter_documents(roots: list[Path], cfg: InputConfig, languages: set[str] | None,
                   skips: Counter, max_file_bytes: int | None = None,
                   state: dict | None = None) -> Iterator[Document]:
    """Documents of every local input in order; ``skips`` counts what was left out.

    ``state`` (optional) receives ``bytes_read`` and ``limit_reached`` when done.
    """
    reader = SourceReader(cfg, {normalize_language(x) for x in languages or ()}, skips,
                          max_file_bytes)
    for entry in iter_input_files(roots, cfg, skips):
        if reader.at_limit():
            break
        yield from read_input_file(entry, reader)
    if state is not None:
        state.update(bytes_read=reader.bytes_read, limit_reached=reader.limit_reached,
                     documents=reader.next_id)
