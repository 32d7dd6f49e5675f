"""Building, saving and loading a retrieval index (the folder a QA service serves from).

A built index folder holds everything needed to answer queries:

    manifest.json      encoder, settings, passage count, hash of inputs + settings
    passages.jsonl     the passages, in index order
    tfidf/             TF-IDF vectorizer (joblib) and passage matrix (.npz)
    bm25/              BM25 vectorizer and weight matrix
    dense/dense.faiss  FAISS index of the MiniLM passage embeddings

It is written into a temporary sibling folder that is renamed into place, so a
failed build leaves the previous index (or nothing) but never a half-written one;
and it is skipped when the inputs and settings hash to what the manifest records.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retrieval.documents import Passage, ScoredPassage
from retrieval.index.encoder import MODEL_NAME, SentenceEncoder
from retrieval.index.ingest import DEFAULT_MAX_PASSAGE_CHARS, input_files, load_passages
from retrieval.index.retrievers import (
    Bm25Retriever,
    Bm25Settings,
    DenseRetriever,
    DenseSettings,
    HybridRetriever,
    HybridSettings,
    Retriever,
    TfidfRetriever,
    TfidfSettings,
)

# Part of every index's input hash: bump it whenever ingestion or storage changes what an index holds,
# so indexes built by older code are rebuilt (2: Markdown titles from the first `# ` heading).
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
PASSAGES = "passages.jsonl"
BASE_RETRIEVERS = ("tfidf", "bm25", "dense")
RETRIEVER_NAMES = (*BASE_RETRIEVERS, "hybrid")


class IndexStoreError(RuntimeError):
    """An index folder that is missing, incomplete or from an incompatible version; names the folder."""


@dataclass(frozen=True)
class IndexSettings:
    """Everything that decides an index's content; its hash decides whether a rebuild is needed."""

    max_passage_chars: int = DEFAULT_MAX_PASSAGE_CHARS
    tfidf: TfidfSettings = field(default_factory=TfidfSettings)
    bm25: Bm25Settings = field(default_factory=Bm25Settings)
    dense: DenseSettings = field(default_factory=DenseSettings)
    hybrid: HybridSettings = field(default_factory=HybridSettings)
    default_retriever: str = "hybrid"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> IndexSettings:
        kinds = {
            "tfidf": TfidfSettings,
            "bm25": Bm25Settings,
            "dense": DenseSettings,
            "hybrid": HybridSettings,
        }
        return cls(
            **{key: _from_dict(kinds[key], value) if key in kinds else value for key, value in raw.items()}
        )


def _from_dict(kind: type, raw: dict[str, Any]):
    """Rebuild a settings dataclass from JSON, where tuples came back as lists."""
    return kind(**{key: tuple(value) if isinstance(value, list) else value for key, value in raw.items()})


@dataclass(frozen=True)
class BuildResult:
    built: bool  # False: the index was up to date and left alone
    passage_count: int
    input_hash: str


def input_hash(doc_paths: Sequence[str | Path], settings: IndexSettings) -> str:
    """SHA-256 over every input file's name and bytes, the settings, the encoder and the format version."""
    digest = hashlib.sha256()
    header = {"format": FORMAT_VERSION, "encoder": MODEL_NAME, "settings": asdict(settings)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for root in doc_paths:
        for file in input_files(root):
            digest.update(str(file.relative_to(root) if file != Path(root) else file.name).encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def build_index(
    doc_paths: Sequence[str | Path],
    out_dir: str | Path,
    settings: IndexSettings = IndexSettings(),
    encoder: SentenceEncoder | None = None,
    force: bool = False,
) -> BuildResult:
    """Build the index of `doc_paths` into `out_dir`, unless it is already built from the same inputs."""
    out_dir = Path(out_dir)
    content_hash = input_hash(doc_paths, settings)
    manifest = _read_manifest(out_dir) if (out_dir / MANIFEST).is_file() else None
    if manifest is not None and manifest.get("input_hash") == content_hash and not force:
        return BuildResult(built=False, passage_count=manifest["passage_count"], input_hash=content_hash)

    passages = load_passages(doc_paths, settings.max_passage_chars)
    if not passages:
        raise IndexStoreError(f"no passages found in {', '.join(map(str, doc_paths))}")
    encoder = encoder or SentenceEncoder()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the served index should be readable like any folder
    try:
        _write_passages(staging / PASSAGES, passages)
        TfidfRetriever.build(passages, settings.tfidf).save(staging / "tfidf")
        Bm25Retriever.build(passages, settings.bm25).save(staging / "bm25")
        DenseRetriever.build(passages, encoder, settings.dense).save(staging / "dense")
        manifest = {
            "format": FORMAT_VERSION,
            "encoder": {"name": MODEL_NAME, "path": str(encoder.model_dir)},
            "settings": asdict(settings),
            "passage_count": len(passages),
            "inputs": [str(path) for path in doc_paths],
            "input_hash": content_hash,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildResult(built=True, passage_count=len(passages), input_hash=content_hash)


class RetrievalIndex:
    """A loaded index: `search` answers with any of its retrievers, building each on first use.

    The encoder model (the slow part to load) is only loaded by the first
    dense or hybrid query, unless `load_index(..., warm=True)`.
    """

    def __init__(
        self, directory: Path, manifest: dict[str, Any], passages: list[Passage], encoder: SentenceEncoder
    ):
        self.directory = directory
        self.manifest = manifest
        self.settings = IndexSettings.from_dict(manifest["settings"])
        self.passages = passages
        self.encoder = encoder
        self._retrievers: dict[str, Retriever] = {}

    def search(self, question: str, k: int = 5, retriever: str | None = None) -> list[ScoredPassage]:
        """The `k` best passages for `question` by `retriever` (default: the index's default, hybrid)."""
        if not question.strip():
            raise ValueError("the question is empty")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return self.retriever(retriever or self.settings.default_retriever).search(question, k)

    def retriever(self, name: str) -> Retriever:
        if name not in RETRIEVER_NAMES:
            raise ValueError(f"unknown retriever {name!r} (expected one of {', '.join(RETRIEVER_NAMES)})")
        if name not in self._retrievers:
            self._retrievers[name] = self._load_retriever(name)
        return self._retrievers[name]

    def _load_retriever(self, name: str) -> Retriever:
        try:
            if name == "tfidf":
                return TfidfRetriever.load(self.directory / "tfidf", self.passages)
            if name == "bm25":
                return Bm25Retriever.load(self.directory / "bm25", self.passages)
            if name == "dense":
                return DenseRetriever.load(
                    self.directory / "dense", self.passages, self.encoder, self.settings.dense
                )
        except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as error:
            raise IndexStoreError(f"{self.directory}: cannot load the {name} retriever ({error})") from error
        if not set(self.settings.hybrid.members) <= set(BASE_RETRIEVERS):
            raise IndexStoreError(
                f"{self.directory}: hybrid members must be among {', '.join(BASE_RETRIEVERS)}"
            )
        members = [self.retriever(member) for member in self.settings.hybrid.members]
        return HybridRetriever(members, self.settings.hybrid)


def load_index(
    directory: str | Path, warm: bool = False, encoder: SentenceEncoder | None = None
) -> RetrievalIndex:
    """Open a built index folder; `warm=True` loads the retrievers and encoder now, not on first query."""
    directory = Path(directory)
    manifest = _read_manifest(directory)
    if manifest.get("format") != FORMAT_VERSION:
        raise IndexStoreError(
            f"{directory}: index format {manifest.get('format')} is not {FORMAT_VERSION}; rebuild it"
        )
    index = RetrievalIndex(
        directory, manifest, _read_passages(directory / PASSAGES), encoder or SentenceEncoder()
    )
    if warm:
        index.retriever(index.settings.default_retriever)
        index.retriever("dense")
        index.encoder.load()
    return index


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise IndexStoreError(
            f"{directory}: not a retrieval index ({error}); build it with `python -m retrieval index`"
        ) from error


def _write_passages(path: Path, passages: Sequence[Passage]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for passage in passages:
            handle.write(json.dumps(asdict(passage), ensure_ascii=False) + "\n")


def _read_passages(path: Path) -> list[Passage]:
    try:
        with path.open(encoding="utf-8") as handle:
            return [Passage(**json.loads(line)) for line in handle if line.strip()]
    except (OSError, json.JSONDecodeError, TypeError) as error:
        raise IndexStoreError(f"{path}: unreadable passages file ({error})") from error


def replace_dir(staging: Path, target: Path) -> None:
    """Move the finished `staging` folder to `target`; an old `target` is removed only after the swap."""
    if target.exists():
        retired = target.with_name(f".{target.name}.old-{staging.name.rsplit('-', 1)[-1]}")
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(target)
