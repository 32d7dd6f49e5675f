"""Command line: build a retrieval index, and search it.

python -m retrieval index --docs data/knowledge --out var/index
python -m retrieval search --index var/index --retriever hybrid -k 5 "What is a rising sign?"
python -m retrieval serve --port 8000   (the QA HTTP service; QA_* variables: retrieval.service.settings)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from retrieval.index.encoder import SentenceEncoder
from retrieval.index.ingest import DEFAULT_MAX_PASSAGE_CHARS, IngestError
from retrieval.index.retrievers import DenseSettings
from retrieval.index.store import RETRIEVER_NAMES, IndexSettings, IndexStoreError, build_index, load_index

EXIT_BAD_INPUT = 2
SNIPPET_CHARS = 300


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (IngestError, IndexStoreError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _index(args: argparse.Namespace) -> int:
    settings = IndexSettings(
        max_passage_chars=args.max_chars,
        dense=dataclasses.replace(DenseSettings(), index_type=args.dense_index),
    )
    started = time.perf_counter()
    result = build_index(
        args.docs, args.out, settings, SentenceEncoder(threads=args.threads), force=args.force
    )
    if result.built:
        print(f"built {args.out}: {result.passage_count} passages in {time.perf_counter() - started:.1f} s")
    else:
        print(f"skipped: {args.out} is up to date ({result.passage_count} passages, inputs unchanged)")
    return 0


def _search(args: argparse.Namespace) -> int:
    index = load_index(args.index, encoder=SentenceEncoder(threads=args.threads))
    results = index.search(args.question, k=args.k, retriever=args.retriever)
    if not results:
        print("no passage matches")
    for rank, scored in enumerate(results, start=1):
        passage = scored.passage
        text = " ".join(passage.text.split())
        snippet = text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "..."
        print(f"{rank}. [{scored.score:.4f}] {passage.passage_id} | {passage.title}\n   {snippet}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    # Imported here: the service pulls in torch, transformers and FastAPI, which `index` and `search` skip.
    from retrieval.service.app import serve
    from retrieval.service.settings import ServiceConfig

    config = ServiceConfig.from_env().with_overrides(
        index_dir=args.index,
        reader_dir=args.reader,
        docs=None if args.docs is None else tuple(args.docs),
        host=args.host,
        port=args.port,
        threads=args.threads,
        read_workers=args.read_workers,
        abstain_threshold=args.abstain_threshold,
        min_relevance=args.min_relevance,
        reader_backend=args.reader_backend,
        export_dir=args.export_dir,
        encoder_backend=args.encoder_backend,
        first_read_confidence=args.first_read_confidence,
    )
    serve(config)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m retrieval", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    index = commands.add_parser("index", help="build (or skip, if unchanged) the index of documents")
    index.add_argument(
        "--docs", nargs="+", required=True, metavar="PATH", help="files or folders of documents"
    )
    index.add_argument("--out", required=True, metavar="DIR", help="index folder to write")
    index.add_argument("--max-chars", type=int, default=DEFAULT_MAX_PASSAGE_CHARS, help="passage size limit")
    index.add_argument(
        "--dense-index", choices=("flat", "hnsw", "ivf"), default="flat", help="FAISS index type"
    )
    index.add_argument(
        "--force", action="store_true", help="rebuild even if inputs and settings are unchanged"
    )
    index.set_defaults(run=_index)

    search = commands.add_parser("search", help="print the best passages for a question")
    search.add_argument("--index", required=True, metavar="DIR", help="index folder built by `index`")
    search.add_argument(
        "--retriever", choices=RETRIEVER_NAMES, default=None, help="default: the index's (hybrid)"
    )
    search.add_argument("-k", type=int, default=5, help="how many passages")
    search.add_argument("question")
    search.set_defaults(run=_search)

    serve = commands.add_parser("serve", help="run the QA HTTP service (options override QA_* variables)")
    serve.add_argument("--index", type=Path, metavar="DIR", help="index folder (default var/index)")
    serve.add_argument("--reader", type=Path, metavar="DIR", help="reader model (default models/reader)")
    serve.add_argument(
        "--docs",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="documents to (re)build the index from when missing or outdated (default data/knowledge); "
        "none: serve --index as it is",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument(
        "--abstain-threshold", type=float, help="override the reader's calibrated abstention threshold"
    )
    serve.add_argument(
        "--reader-backend",
        help="auto (default: torch-bf16 where the CPU has native bf16, else onnx), torch, torch-bf16, "
        "or an export made at start: onnx, onnx-int8, torchscript",
    )
    serve.add_argument(
        "--read-workers",
        type=int,
        help="questions read at once, each by its own thread(s) (default 2, at most the CPU's cores)",
    )
    serve.add_argument(
        "--export-dir", type=Path, help="where the exported reader is kept (var/reader-export)"
    )
    serve.add_argument(
        "--encoder-backend",
        help="how questions are embedded: onnx (default, exported once into var/encoder-export) or torch",
    )
    serve.add_argument(
        "--min-relevance",
        type=float,
        help="off-topic cut: best-passage cosine similarity below which the reader is not asked (0.30)",
    )
    serve.add_argument(
        "--first-read-confidence",
        type=float,
        help="confidence at which the most relevant passage's answer is given without reading the "
        "others, when that passage leads them (0.8; above 1: read every passage)",
    )
    serve.set_defaults(run=_serve)

    for command in (index, search, serve):
        command.add_argument("--threads", type=int, default=None, help="torch threads for the models")
    return parser


if __name__ == "__main__":
    sys.exit(main())
