"""The reader: a BERT span extractor that answers a question from a few passages.

`features` is the one preprocessing path (training, evaluation and serving cut windows the same
way), `model` runs the network (PyTorch or an exported ONNX/TorchScript file), `postprocess`
turns logits into ranked character spans and `metrics` scores them the official SQuAD way.
It imports only the shared `retrieval.documents`, never the index or the service.
"""

from retrieval.reader.model import Answer, Reader, ReaderConfig

__all__ = ["Answer", "Reader", "ReaderConfig"]
