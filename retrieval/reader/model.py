"""The reader: extracts the answer to a question from retrieved passages.

`Reader.answer_many` is what serving AND training-time evaluation call, so the
dev numbers measure the code path that answers users.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from retrieval.documents import Passage
from retrieval.reader.backends import TORCH_BACKENDS, SpanModel, load_span_model
from retrieval.reader.features import FeatureConfig, QAPair, Window, collate, encode_pairs
from retrieval.reader.postprocess import QuestionPrediction, rank_spans

CONFIG_FILE = "reader_config.json"


@dataclass(frozen=True)
class ReaderConfig:
    """Everything besides the weights that decides an answer; saved next to them as reader_config.json."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    max_answer_tokens: int = 30
    n_best_per_window: int = 20
    batch_size: int = 32
    abstain_threshold: float = 0.0  # answers below this confidence become "no answer"; set by calibration
    # Logits added to the spans of each passage per unit of its relevance (question-passage cosine)
    # below the most relevant passage's, when the caller gives relevances (see retrieval.reader.postprocess).
    relevance_weight: float = 30.0
    # Passages whose relevance is more than this below the most relevant passage's are not read
    # (None reads them all): at the shipped weight their prior is 9 logits or more against them. Of
    # 500 SQuAD dev questions (calibration's fit half, served top 3) 11% of passages are skipped
    # and 1 answer (right) came from one; of the knowledge base's 143, 15% and none.
    max_relevance_gap: float | None = 0.2

    def save(self, model_dir: str | Path) -> None:
        (Path(model_dir) / CONFIG_FILE).write_text(
            json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8"
        )

    @classmethod
    def load(cls, model_dir: str | Path) -> ReaderConfig:
        path = Path(model_dir) / CONFIG_FILE
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{**raw, "features": FeatureConfig(**raw.get("features", {}))})


@dataclass(frozen=True)
class Candidate:
    """A possible answer: exact characters passage.text[start:end]."""

    text: str
    confidence: float
    passage: Passage
    start: int
    end: int


@dataclass(frozen=True)
class Answer:
    """The reader's answer. When `abstained`, text is "" and passage/start/end are None;
    `confidence` is then the best span's confidence (why it abstained) and `candidates` still lists
    the guesses."""

    text: str
    confidence: float
    abstained: bool
    passage: Passage | None
    start: int | None
    end: int | None
    candidates: tuple[Candidate, ...]
    passages_read: int  # how many of the passages it was given were read


@dataclass
class _ReadingPlan:
    """What one forward pass reads, per (question, passage) pair: the pair, its owner (query index,
    passage) and the prior added to its spans' scores."""

    pairs: list[QAPair] = field(default_factory=list)
    owners: list[tuple[int, Passage]] = field(default_factory=list)
    priors: list[float] = field(default_factory=list)


class Reader:
    """A span-extraction model with its tokenizer and answer policy.

    `model` is the PyTorch model (training evaluates through it) or an exported one; either way
    windows, batching and postprocessing are this class's, so every backend answers alike.
    `autocast_dtype` (bf16) runs the PyTorch model under autocast: on CPUs with native bf16 it
    reads 1.3x faster than ONNX Runtime fp32 with the same answers (bench/README.md).
    """

    def __init__(
        self,
        model: SpanModel,
        tokenizer: PreTrainedTokenizerBase,
        config: ReaderConfig,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        if autocast_dtype is not None and not isinstance(model, PreTrainedModel):
            raise ValueError("autocast applies to the PyTorch model only, not to an exported one")
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.autocast_dtype = autocast_dtype
        self.device = (
            next(model.parameters()).device if isinstance(model, PreTrainedModel) else torch.device("cpu")
        )

    @classmethod
    def load(
        cls, model_dir: str | Path, threads: int | None = None, device: str = "cpu", backend: str = "torch"
    ) -> Reader:
        """Load a saved reader, its network run by `backend` (backends.BACKENDS)."""
        model_dir = Path(model_dir)
        if threads is not None:
            torch.set_num_threads(threads)
        model = load_span_model(model_dir, backend, threads, device)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return cls(model, tokenizer, ReaderConfig.load(model_dir), TORCH_BACKENDS.get(backend))

    def replica(self) -> Reader:
        """A reader over the same model with its own tokenizer, for another thread: the Rust tokenizers
        fail when one instance is used by two threads at once; the model's forward pass does not."""
        return Reader(self.model, copy.deepcopy(self.tokenizer), self.config, self.autocast_dtype)

    def with_config(self, config: ReaderConfig) -> Reader:
        """The same loaded model and tokenizer with another answer policy (no reload)."""
        return Reader(self.model, self.tokenizer, config, self.autocast_dtype)

    def _batch_logits(self, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """Start/end logits of one padded batch, from whichever backend holds the weights."""
        if not isinstance(self.model, PreTrainedModel):
            return self.model.logits(batch)
        with torch.autocast(self.device.type, self.autocast_dtype, enabled=self.autocast_dtype is not None):
            output = self.model(**{name: tensor.to(self.device) for name, tensor in batch.items()})
        return output.start_logits.float().cpu().numpy(), output.end_logits.float().cpu().numpy()

    @torch.inference_mode()
    def window_logits(self, windows: Sequence[Window]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Start/end logits per window (unpadded), batched by similar length to waste little on padding."""
        torch_model = self.model if isinstance(self.model, PreTrainedModel) else None
        was_training = torch_model is not None and torch_model.training
        if torch_model is not None:
            torch_model.eval()
        results: list[tuple[np.ndarray, np.ndarray]] = [None] * len(windows)  # type: ignore[list-item]
        order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
        for batch_start in range(0, len(order), self.config.batch_size):
            indices = order[batch_start : batch_start + self.config.batch_size]
            batch = collate([windows[i] for i in indices], self.tokenizer.pad_token_id, with_labels=False)
            starts, ends = self._batch_logits(batch)
            for row, index in enumerate(indices):
                length = len(windows[index].input_ids)
                results[index] = (starts[row, :length], ends[row, :length])
        if was_training:
            torch_model.train()
        return results

    def answer_many(
        self,
        queries: Sequence[tuple[str, Sequence[Passage]]],
        top_n: int = 5,
        relevances: Sequence[Sequence[float] | None] | None = None,
    ) -> list[Answer]:
        """Answer several (question, passages) queries with shared batches; one Answer per query, in order.

        `relevances[i]`, when given, holds the question-passage similarity of each of query i's
        passages: the reader then leans towards the passages retrieval found most relevant.
        """
        if relevances is not None and len(relevances) != len(queries):
            raise ValueError(f"{len(relevances)} relevance lists for {len(queries)} queries")
        plan = _ReadingPlan()
        for query_index, (question, passages) in enumerate(queries):
            self._plan_reading(
                plan, query_index, question, passages, relevances[query_index] if relevances else None
            )
        pairs, owners, priors = plan.pairs, plan.owners, plan.priors
        read_per_query = Counter(query_index for query_index, _ in owners)
        windows = encode_pairs(self.tokenizer, pairs, self.config.features)
        logits = self.window_logits(windows)
        by_query: list[list[int]] = [[] for _ in queries]
        for window_index, window in enumerate(windows):
            by_query[owners[window.pair_index][0]].append(window_index)
        contexts = [pair.context for pair in pairs]
        return [
            self._decide(
                [windows[i] for i in indices],
                [logits[i] for i in indices],
                contexts,
                owners,
                priors,
                top_n,
                passages_read=read_per_query[query_index],
            )
            for query_index, indices in enumerate(by_query)
        ]

    def passages_to_read(self, passage_count: int, relevances: Sequence[float] | None) -> list[int]:
        """Indices of the passages worth reading: every one without relevances, else those within
        the config's max_relevance_gap of the most relevant (whose spans their prior does not rule out)."""
        priors = self.passage_priors(passage_count, relevances, weight=1.0)  # relevance minus the best's
        gap = self.config.max_relevance_gap
        return [i for i, prior in enumerate(priors) if gap is None or -prior <= gap]

    def passage_priors(
        self, passage_count: int, relevances: Sequence[float] | None, weight: float | None = None
    ) -> list[float]:
        """The score prior of each passage: 0 for the most relevant, less for the others; all 0 without
        relevances. `weight` overrides the config's relevance_weight (benchmarks compare several)."""
        if relevances is None:
            return [0.0] * passage_count
        if len(relevances) != passage_count:
            raise ValueError(f"{len(relevances)} relevances for {passage_count} passages")
        best = max(relevances, default=0.0)
        weight = self.config.relevance_weight if weight is None else weight
        return [weight * (relevance - best) for relevance in relevances]

    def answer(
        self,
        question: str,
        passages: Sequence[Passage],
        top_n: int = 5,
        relevances: Sequence[float] | None = None,
        enough: Callable[[Answer], bool] | None = None,
    ) -> Answer:
        """The best answer span in `passages` (with up to `top_n` candidates), or an abstention.

        With `enough` and relevances, the most relevant passage is read first, and the others only
        when `enough` rejects the answer it gives alone. They are then ranked together with the first
        passage's spans (its logits are kept), as reading them all at once would rank them.
        """
        if enough is None or relevances is None:
            return self.answer_many([(question, passages)], top_n=top_n, relevances=[relevances])[0]
        plan = self._plan_reading(_ReadingPlan(), 0, question, passages, relevances, most_relevant_first=True)
        contexts = [pair.context for pair in plan.pairs]
        windows = encode_pairs(self.tokenizer, plan.pairs, self.config.features)
        first = [window for window in windows if window.pair_index == 0]
        first_logits = self.window_logits(first)
        read = len(plan.pairs)
        answer = self._decide(first, first_logits, contexts, plan.owners, plan.priors, top_n, min(1, read))
        if read <= 1 or enough(answer):
            return answer
        rest = [window for window in windows if window.pair_index != 0]
        logits = first_logits + self.window_logits(rest)
        return self._decide(first + rest, logits, contexts, plan.owners, plan.priors, top_n, read)

    def _plan_reading(
        self,
        plan: _ReadingPlan,
        query_index: int,
        question: str,
        passages: Sequence[Passage],
        relevances: Sequence[float] | None,
        most_relevant_first: bool = False,
    ) -> _ReadingPlan:
        """Add to `plan` the passages of one query worth reading (passages_to_read), with their priors;
        rejects an empty question and relevances of the wrong length."""
        _check_question(question)
        priors = self.passage_priors(len(passages), relevances)  # checks the lengths
        to_read = self.passages_to_read(len(passages), relevances)
        if most_relevant_first and relevances is not None:
            to_read.sort(key=lambda i: -relevances[i])
        for i in to_read:
            plan.pairs.append(QAPair(question=question, context=passages[i].text))
            plan.owners.append((query_index, passages[i]))
            plan.priors.append(priors[i])
        return plan

    def rank(
        self,
        windows: Sequence[Window],
        logits: Sequence[tuple[np.ndarray, np.ndarray]],
        contexts: Sequence[str],
        priors: Sequence[float] | None,
        top_n: int,
    ) -> QuestionPrediction:
        """The answer spans of one question's windows, best first, with this reader's settings."""
        return rank_spans(
            windows,
            [start for start, _ in logits],
            [end for _, end in logits],
            contexts,
            max_answer_tokens=self.config.max_answer_tokens,
            n_best_per_window=self.config.n_best_per_window,
            top_n=max(1, top_n),
            pair_priors=priors,
        )

    def _decide(
        self,
        windows: list[Window],
        logits: list[tuple[np.ndarray, np.ndarray]],
        contexts: list[str],
        owners: list[tuple[int, Passage]],
        priors: list[float],
        top_n: int,
        passages_read: int,
    ) -> Answer:
        prediction = self.rank(windows, logits, contexts, priors, top_n)
        candidates = tuple(
            Candidate(
                text=c.text,
                confidence=c.confidence,
                passage=owners[c.pair_index][1],
                start=c.start,
                end=c.end,
            )
            for c in prediction.candidates
        )
        best = prediction.best(self.config.abstain_threshold)
        if best is None:
            confidence = candidates[0].confidence if candidates else 0.0
            return Answer(
                text="",
                confidence=confidence,
                abstained=True,
                passage=None,
                start=None,
                end=None,
                candidates=candidates,
                passages_read=passages_read,
            )
        top = candidates[0]
        return Answer(
            text=top.text,
            confidence=top.confidence,
            abstained=False,
            passage=top.passage,
            start=top.start,
            end=top.end,
            candidates=candidates,
            passages_read=passages_read,
        )


def _check_question(question: str) -> None:
    if not question or not question.strip():
        raise ValueError("the question is empty")
