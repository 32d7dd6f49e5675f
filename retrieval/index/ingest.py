"""Turning document files into passages: SQuAD JSON, JSON Lines, Markdown and text.

Every input is read completely before anything is written, so a malformed file
stops the build with an error that names it and leaves no partial index.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from retrieval.documents import Passage
from retrieval.squad import SquadFormatError, read_squad

DEFAULT_MAX_PASSAGE_CHARS = 1200  # about 250 MiniLM tokens: fits the encoder and the reader's window
TEXT_SUFFIXES = (".md", ".markdown", ".txt")

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_NON_SLUG = re.compile(r"[^a-z0-9]+")


class IngestError(ValueError):
    """A document that cannot be turned into passages; the message names the file."""


def load_passages(paths: Sequence[str | Path], max_chars: int = DEFAULT_MAX_PASSAGE_CHARS) -> list[Passage]:
    """Read every path (file or folder) and return its passages, duplicates dropped."""
    passages: list[Passage] = []
    for path in paths:
        for file in input_files(path):
            passages.extend(read_file(file, max_chars))
    return deduplicate(passages)


def input_files(path: str | Path) -> list[Path]:
    """The document files a path stands for: itself, or the text files under a folder, in sorted order."""
    path = Path(path)
    if path.is_dir():
        return sorted(
            file for file in path.rglob("*") if file.is_file() and file.suffix.lower() in TEXT_SUFFIXES
        )
    if not path.is_file():
        raise IngestError(f"{path}: no such file or folder")
    return [path]


def read_file(path: Path, max_chars: int = DEFAULT_MAX_PASSAGE_CHARS) -> list[Passage]:
    """Passages of one file, its format chosen by the file name."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".jsonl"):
        return read_jsonl(path)
    if name.endswith(".json"):
        return read_squad_passages(path)
    if name.endswith(TEXT_SUFFIXES):
        return read_markdown(path, max_chars)
    raise IngestError(
        f"{path}: unsupported file type (expected .json, .jsonl, .md, .markdown or .txt, optionally .gz)"
    )


def read_squad_passages(path: Path) -> list[Passage]:
    """One passage per SQuAD paragraph; the id is the article title plus a hash of the text."""
    try:
        paragraphs = read_squad(path)
    except SquadFormatError as error:
        raise IngestError(str(error)) from error
    return [_hashed_passage(paragraph.title.replace("_", " "), paragraph.context) for paragraph in paragraphs]


def read_jsonl(path: Path) -> list[Passage]:
    """One passage per line `{"title": ..., "text": ..., "id": optional}`."""
    passages = []
    try:
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                    raise IngestError(f"{path}:{line_number}: expected an object with a string 'text'")
                title = str(record.get("title") or path.stem)
                if record.get("id") is not None:
                    passages.append(Passage(str(record["id"]), title, record["text"].strip()))
                else:
                    passages.append(_hashed_passage(title, record["text"]))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IngestError(
            f"{path}: not a readable JSON Lines file ({type(error).__name__}: {error})"
        ) from error
    return passages


def read_markdown(path: Path, max_chars: int = DEFAULT_MAX_PASSAGE_CHARS) -> list[Passage]:
    """Split a Markdown or text file at headings, then pack its paragraphs into passages <= `max_chars`.

    The title is the first `# ` heading (else the file name); each passage's
    title adds its section heading, and its id is `<file-stem>#<section-slug>-<n>`,
    which stays the same as long as the section's text does.
    """
    try:
        with _open_text(path) as handle:
            text = handle.read()
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise IngestError(f"{path}: not a readable text file ({type(error).__name__}: {error})") from error
    headings = (match for match in map(_HEADING.match, text.splitlines()) if match)
    doc_title = next((match.group(2) for match in headings if match.group(1) == "#"), path.stem)
    passages = []
    for heading, paragraphs in _sections(text):
        chunks = pack(paragraphs, max_chars)
        section_slug = slugify(heading) or "intro"
        title = doc_title if heading in ("", doc_title) else f"{doc_title} - {heading}"
        passages.extend(
            Passage(f"{path.stem}#{section_slug}-{n}", title, chunk)
            for n, chunk in enumerate(chunks, start=1)
        )
    return _unique_ids(passages)


def pack(paragraphs: Iterable[str], max_chars: int) -> list[str]:
    """Join consecutive paragraphs while they fit in `max_chars`; split longer ones at sentence ends."""
    pieces = [piece for paragraph in paragraphs for piece in split_long(paragraph, max_chars)]
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 2 + len(piece) <= max_chars:
            chunks[-1] = f"{chunks[-1]}\n\n{piece}"
        else:
            chunks.append(piece)
    return chunks


def split_long(paragraph: str, max_chars: int) -> list[str]:
    """Split a paragraph at sentence ends (a run-on sentence at spaces) into pieces of <= max_chars."""
    if len(paragraph) <= max_chars:
        return [paragraph]
    units = [
        unit
        for sentence in _SENTENCE_END.split(paragraph)
        for unit in ([sentence] if len(sentence) <= max_chars else _split_words(sentence, max_chars))
    ]
    pieces: list[str] = []
    for unit in units:
        if pieces and len(pieces[-1]) + 1 + len(unit) <= max_chars:
            pieces[-1] = f"{pieces[-1]} {unit}"
        else:
            pieces.append(unit)
    return pieces


def deduplicate(passages: Iterable[Passage]) -> list[Passage]:
    """Drop passages whose normalised text was seen before (first one wins); reject clashing ids."""
    seen_texts: set[str] = set()
    seen_ids: set[str] = set()
    unique = []
    for passage in passages:
        key = normalise(passage.text)
        if not key or key in seen_texts:
            continue
        if passage.passage_id in seen_ids:
            raise IngestError(f"passage id {passage.passage_id!r} is used by two different passages")
        seen_texts.add(key)
        seen_ids.add(passage.passage_id)
        unique.append(passage)
    return unique


def normalise(text: str) -> str:
    """Case- and whitespace-insensitive form of a text, for duplicate detection."""
    return " ".join(text.casefold().split())


def slugify(text: str) -> str:
    return _NON_SLUG.sub("-", text.casefold()).strip("-")


def _sections(text: str) -> Iterator[tuple[str, list[str]]]:
    """Yield (heading, paragraphs) per section; heading "" for text before any heading."""
    heading, paragraphs, current = "", [], []
    for line in text.splitlines():
        match = _HEADING.match(line)
        if (match or not line.strip()) and current:
            paragraphs.append(" ".join(current))
            current = []
        if match:
            if paragraphs:
                yield heading, paragraphs
            heading, paragraphs = match.group(2), []
        elif line.strip():
            current.append(line.strip())
    if current:
        paragraphs.append(" ".join(current))
    if paragraphs:
        yield heading, paragraphs


def _split_words(sentence: str, max_chars: int) -> list[str]:
    pieces: list[str] = []
    for word in sentence.split():
        if pieces and len(pieces[-1]) + 1 + len(word) <= max_chars:
            pieces[-1] = f"{pieces[-1]} {word}"
        else:
            pieces.append(word)
    return pieces


def _unique_ids(passages: list[Passage]) -> list[Passage]:
    """Number repeated section slugs (two 'Overview' sections) so ids stay unique within a file."""
    counts: dict[str, int] = {}
    unique = []
    for passage in passages:
        count = counts.get(passage.passage_id, 0)
        counts[passage.passage_id] = count + 1
        passage_id = passage.passage_id if count == 0 else f"{passage.passage_id}.{count + 1}"
        unique.append(Passage(passage_id, passage.title, passage.text))
    return unique


def _hashed_passage(title: str, text: str) -> Passage:
    text = text.strip()
    digest = hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()[:10]
    return Passage(f"{slugify(title) or 'doc'}#{digest}", title, text)


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")
