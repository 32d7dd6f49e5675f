"""Open-question answering for the horoscope assistant, in the order a question flows.

- `retrieval.index`: documents into passages, the passage index (BM25, TF-IDF, FAISS) and search.
- `retrieval.reader`: the BERT span extractor that reads passages and returns an answer.
- `retrieval.training`: fine-tuning the reader with DDP, the Optuna search, export for serving.
- `retrieval.service`: the QA HTTP service that puts index and reader behind one endpoint.

Shared by all of them: `documents` (passages), `squad` (reading SQuAD files), `digest` (hashes
that name exports). Imports go one way: index and reader never import each other, training
imports the reader (and the index's file helpers), the service imports the other three, and
nothing in the package imports the service (the command line loads it when asked to serve).
"""
