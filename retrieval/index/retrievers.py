"""Retrievers: rank passages for a question (TF-IDF, BM25, dense FAISS, and a fusion of them).

They share one small interface, `search(question, k)`, so the QA service and
the benchmark can swap them freely. Each can be built from passages, saved to
a folder and loaded back; the passages themselves are stored once by the index
store and handed to `load`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import faiss
import joblib
import numpy as np
import scipy.sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from retrieval.documents import Passage, ScoredPassage
from retrieval.index.encoder import EMBEDDING_DIM, SentenceEncoder


class Retriever(Protocol):
    def search(self, question: str, k: int) -> list[ScoredPassage]:
        """The `k` best passages for `question`, best first."""
        ...


class ScoringRetriever(Retriever, Protocol):
    def scores(self, question: str, passages: Sequence[Passage]) -> list[float]:
        """The score `search` would give each of `passages` (indexed ones, in any order)."""
        ...


def indexed_text(passage: Passage) -> str:
    """What retrievers match against: the title carries the topic that paragraphs often leave implicit."""
    return f"{passage.title}\n{passage.text}" if passage.title else passage.text


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` highest scores, best first, without sorting the whole array."""
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    candidates = np.argpartition(-scores, k - 1)[:k]
    return candidates[np.argsort(-scores[candidates], kind="stable")]


@dataclass(frozen=True)
class TfidfSettings:
    ngram_range: tuple[int, int] = (1, 2)
    sublinear_tf: bool = True
    stop_words: str | None = "english"


@dataclass(frozen=True)
class Bm25Settings:
    k1: float = 1.2
    b: float = 0.75
    ngram_range: tuple[int, int] = (1, 1)
    stop_words: str | None = "english"


class _SparseRetriever:
    """A vectorizer and a passage-by-term matrix; a passage's score is its row times the question vector."""

    files = ("vectorizer.joblib", "matrix.npz")

    def __init__(
        self, passages: Sequence[Passage], vectorizer: CountVectorizer, matrix: scipy.sparse.spmatrix
    ):
        self.passages = list(passages)
        self._row_of = {passage.passage_id: row for row, passage in enumerate(self.passages)}
        self.vectorizer = vectorizer
        # Column-major, so a query reads only the posting lists of its own terms.
        self.matrix = scipy.sparse.csc_matrix(matrix, dtype=np.float32)

    def search(self, question: str, k: int) -> list[ScoredPassage]:
        scores = self._all_scores(question)
        return [ScoredPassage(self.passages[i], float(scores[i])) for i in top_k(scores, k) if scores[i] > 0]

    def scores(self, question: str, passages: Sequence[Passage]) -> list[float]:
        scores = self._all_scores(question)
        return [float(scores[self._row_of[passage.passage_id]]) for passage in passages]

    def _all_scores(self, question: str) -> np.ndarray:
        """Every passage's score: one sparse product over the question's terms (well under a ms at 20k)."""
        vector = self._question_vectors([question]).tocsr()
        return np.asarray(self.matrix[:, vector.indices] @ vector.data, dtype=np.float32).ravel()

    def score_matrix(self, questions: Sequence[str]) -> np.ndarray:
        """Every passage's score for each of many questions at once (questions x passages), as
        `search` scores one: for bulk work such as mining training negatives."""
        return (self._question_vectors(questions) @ self.matrix.T).toarray()

    def _question_vectors(self, questions: Sequence[str]) -> scipy.sparse.csr_matrix:
        return self.vectorizer.transform(questions)

    def save(self, directory: Path) -> None:
        """Vectorizer with joblib (scikit-learn's documented way to persist estimators), matrix as .npz."""
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.vectorizer, directory / self.files[0])
        scipy.sparse.save_npz(directory / self.files[1], self.matrix)

    @classmethod
    def load(cls, directory: Path, passages: Sequence[Passage]):
        """Load what `save` wrote; only load folders this project wrote (joblib files are pickles)."""
        return cls(
            passages, joblib.load(directory / cls.files[0]), scipy.sparse.load_npz(directory / cls.files[1])
        )


class TfidfRetriever(_SparseRetriever):
    """Cosine similarity of TF-IDF vectors: rows and question vectors are L2-normalised by the vectorizer."""

    @classmethod
    def build(cls, passages: Sequence[Passage], settings: TfidfSettings = TfidfSettings()) -> TfidfRetriever:
        vectorizer = TfidfVectorizer(
            ngram_range=tuple(settings.ngram_range),
            sublinear_tf=settings.sublinear_tf,
            stop_words=settings.stop_words,
            dtype=np.float32,
        )
        return cls(passages, vectorizer, vectorizer.fit_transform([indexed_text(p) for p in passages]))


class Bm25Retriever(_SparseRetriever):
    """Okapi BM25: the passage weights are precomputed, so a query is one sparse product like TF-IDF."""

    @classmethod
    def build(cls, passages: Sequence[Passage], settings: Bm25Settings = Bm25Settings()) -> Bm25Retriever:
        vectorizer = CountVectorizer(ngram_range=tuple(settings.ngram_range), stop_words=settings.stop_words)
        counts = vectorizer.fit_transform([indexed_text(p) for p in passages]).tocsr().astype(np.float32)
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
        idf = np.log1p((len(passages) - document_frequency + 0.5) / (document_frequency + 0.5))
        row_norm = settings.k1 * (1 - settings.b + settings.b * lengths / max(lengths.mean(), 1.0))
        row_of_entry = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        tf = counts.data
        counts.data = (idf[counts.indices] * tf * (settings.k1 + 1) / (tf + row_norm[row_of_entry])).astype(
            np.float32
        )
        return cls(passages, vectorizer, counts)

    def _question_vectors(self, questions: Sequence[str]) -> scipy.sparse.csr_matrix:
        vectors = self.vectorizer.transform(questions)
        vectors.data[:] = 1.0  # each question term counts once: BM25 sums over the query's distinct terms
        return vectors


@dataclass(frozen=True)
class DenseSettings:
    index_type: Literal["flat", "hnsw", "ivf"] = "flat"  # flat is exact and fast enough below ~100k passages
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    ivf_lists: int | None = None  # None: 4 * sqrt(passages)
    ivf_probes: int = 16
    # One question is too small a search to split: a second OpenMP pool beside torch's spins against
    # it, and encode + flat search over 20k took 28.6 ms p50 with 2 FAISS threads, 14.2 ms with 1.
    query_threads: int = 1
    use_gpu: bool = True  # only takes effect when faiss was built with GPU support and a GPU is visible


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class DenseRetriever:
    """Inner product of MiniLM embeddings (= cosine, as they are unit length) in a FAISS index."""

    file = "dense.faiss"

    def __init__(
        self,
        passages: Sequence[Passage],
        index: faiss.Index,
        encoder: SentenceEncoder,
        settings: DenseSettings,
    ):
        self.passages = list(passages)
        self.encoder = encoder
        self.settings = settings
        self._row_of = {passage.passage_id: row for row, passage in enumerate(self.passages)}
        if isinstance(index, faiss.IndexIVF):
            index.make_direct_map()  # so `scores` can read stored vectors back
        apply_search_settings(index, settings)
        self.index = (
            faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
            if settings.use_gpu and gpu_available()
            else index
        )

    @classmethod
    def build(
        cls, passages: Sequence[Passage], encoder: SentenceEncoder, settings: DenseSettings = DenseSettings()
    ) -> DenseRetriever:
        return cls.from_embeddings(
            passages, encoder.encode([indexed_text(p) for p in passages]), encoder, settings
        )

    @classmethod
    def from_embeddings(
        cls,
        passages: Sequence[Passage],
        embeddings: np.ndarray,
        encoder: SentenceEncoder,
        settings: DenseSettings,
    ) -> DenseRetriever:
        """Index precomputed embeddings (the benchmark reuses one encoding for several index types)."""
        index = new_index(settings, len(passages))
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if not index.is_trained:
            index.train(embeddings)
        index.add(embeddings)
        return cls(passages, index, encoder, settings)

    def search(self, question: str, k: int) -> list[ScoredPassage]:
        query = self.encoder.encode_query(question)
        with faiss_threads(self.settings.query_threads):
            scores, ids = self.index.search(query, min(k, len(self.passages)))
        return [
            ScoredPassage(self.passages[i], float(s))
            for s, i in zip(scores[0], ids[0], strict=True)
            if i >= 0
        ]

    def scores(self, question: str, passages: Sequence[Passage]) -> list[float]:
        """Cosine similarity of `question` to each of `passages` (any of the indexed ones, in any order),
        from the vectors stored in the index: no passage is encoded again."""
        rows = np.array([self._row_of[passage.passage_id] for passage in passages], dtype=np.int64)
        if not len(rows):
            return []
        vectors = self.index.reconstruct_batch(rows)
        return [float(s) for s in vectors @ self.encoder.encode_query(question)[0]]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        index = faiss.index_gpu_to_cpu(self.index) if _is_gpu(self.index) else self.index
        faiss.write_index(index, str(directory / self.file))

    @classmethod
    def load(
        cls, directory: Path, passages: Sequence[Passage], encoder: SentenceEncoder, settings: DenseSettings
    ) -> DenseRetriever:
        return cls(passages, faiss.read_index(str(directory / cls.file)), encoder, settings)


def new_index(settings: DenseSettings, size: int) -> faiss.Index:
    """An empty FAISS inner-product index of the configured type for `size` vectors."""
    if settings.index_type == "flat":
        return faiss.IndexFlatIP(EMBEDDING_DIM)
    if settings.index_type == "hnsw":
        index = faiss.IndexHNSWFlat(EMBEDDING_DIM, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.hnsw_ef_construction
        return index
    if settings.index_type == "ivf":
        lists = settings.ivf_lists or int(4 * np.sqrt(size))
        lists = max(1, min(lists, size // 39))  # faiss wants >= 39 training points per list
        return faiss.IndexIVFFlat(
            faiss.IndexFlatIP(EMBEDDING_DIM), EMBEDDING_DIM, lists, faiss.METRIC_INNER_PRODUCT
        )
    raise ValueError(f"unknown dense index type {settings.index_type!r} (expected flat, hnsw or ivf)")


def apply_search_settings(index: faiss.Index, settings: DenseSettings) -> None:
    """Set the search-time knobs (HNSW efSearch, IVF nprobe) that a saved index does not keep."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = settings.hnsw_ef_search
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = settings.ivf_probes


@contextmanager
def faiss_threads(count: int) -> Iterator[None]:
    """Run FAISS with `count` OpenMP threads inside the block, and as before after it."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _is_gpu(index: faiss.Index) -> bool:
    return type(index).__name__.startswith("Gpu")


# Fitted by `make bench-retrieval` (retrieval.index.fusion.fit_linear_weights on 4,000 SQuAD train
# questions over the 19,914-paragraph corpus); bench/results/retrieval.json keeps the fit.
# BM25's scale follows the corpus (its idf), yet these weights also serve the 102-passage
# knowledge base well (recall@1 0.846 against 0.783 for RRF); refit them for a very different corpus.
LINEAR_WEIGHTS = (0.4053, 17.4736)


@dataclass(frozen=True)
class HybridSettings:
    members: tuple[str, ...] = ("bm25", "dense")
    weights: tuple[float, ...] = LINEAR_WEIGHTS
    fusion: Literal["linear", "rrf", "score"] = "linear"
    rrf_k: int = 60
    candidates: int = 50  # how deep each member's ranking is fused


class HybridRetriever:
    """Fuses the rankings of several retrievers, so a passage that both a lexical and a
    semantic retriever rank high wins over one that only one of them likes.

    `linear` adds up the members' raw scores with fitted weights; each member scores every
    candidate any member found, so nothing is guessed. It keeps how sure each member is,
    which rank-based fusion throws away: on SQuAD it ranks the right paragraph first 7 points
    more often than `rrf`. `rrf` (reciprocal rank fusion) ignores the members' score scales;
    `score` min-max-normalises each member's scores over its candidates and adds them up (a
    passage a member did not return gets 0 from it).
    """

    def __init__(self, members: Sequence[Retriever], settings: HybridSettings = HybridSettings()) -> None:
        if len(members) != len(settings.weights):
            raise ValueError(f"{len(members)} hybrid members but {len(settings.weights)} weights")
        if settings.fusion not in ("linear", "rrf", "score"):
            raise ValueError(f"unknown fusion {settings.fusion!r} (expected linear, rrf or score)")
        if settings.fusion == "linear" and not all(hasattr(member, "scores") for member in members):
            raise ValueError("linear fusion needs members that can score given passages (tfidf, bm25, dense)")
        self.members = list(members)
        self.settings = settings

    def search(self, question: str, k: int) -> list[ScoredPassage]:
        depth = max(k, self.settings.candidates)
        if self.settings.fusion == "linear":
            candidates, scores = linear_candidates(self.members, question, depth)
            fused = np.asarray(self.settings.weights) @ scores
            return [ScoredPassage(candidates[i], float(fused[i])) for i in top_k(fused, k)]
        rankings = [member.search(question, depth) for member in self.members]
        totals: dict[str, float] = {}
        passages: dict[str, Passage] = {}
        for ranking, weight in zip(rankings, self.settings.weights, strict=True):
            for contribution, scored in zip(self._contributions(ranking), ranking, strict=True):
                key = scored.passage.passage_id
                passages[key] = scored.passage
                totals[key] = totals.get(key, 0.0) + weight * contribution
        best = sorted(totals.items(), key=lambda item: item[1], reverse=True)[:k]
        return [ScoredPassage(passages[key], score) for key, score in best]

    def _contributions(self, ranking: list[ScoredPassage]) -> list[float]:
        if self.settings.fusion == "rrf":
            return [1.0 / (self.settings.rrf_k + rank) for rank in range(1, len(ranking) + 1)]
        if not ranking:
            return []
        high, low = ranking[0].score, ranking[-1].score
        return [(s.score - low) / (high - low) if high > low else 1.0 for s in ranking]


def linear_candidates(
    members: Sequence[ScoringRetriever], question: str, depth: int
) -> tuple[list[Passage], np.ndarray]:
    """Every passage any member ranks in its top `depth` (once, in order of first appearance), and
    a (members, passages) array of each member's own score for each: what linear fusion weighs."""
    candidates: dict[str, Passage] = {}
    for member in members:
        for scored in member.search(question, depth):
            candidates.setdefault(scored.passage.passage_id, scored.passage)
    passages = list(candidates.values())
    scores = np.array([member.scores(question, passages) for member in members], dtype=np.float64)
    return passages, scores.reshape(len(members), len(passages))
