"""Open-question answering for the horoscope assistant.

Retrievers select passages from a knowledge base (TF-IDF, dense FAISS, hybrid);
the reader extracts the answer span from the selected passages.
"""
