"""Making the reader: DDP fine-tuning on SQuAD, the Optuna search across runs, export for serving.

`train` is the training script (torchrun or one process), built on `data` (windows cached on
disk, length-grouped batches), `checkpoints` (resumable, never half-written), `distributed`
(the process group) and `evaluation` (SQuAD EM/F1 through the serving path, calibration);
`spawn` runs it from Python, `tune` searches its hyperparameters, `ship` promotes a better
reader to models/reader and `export` writes the ONNX/TorchScript files the service loads.
It imports the reader and the index's file helpers; only the service imports it (for `export`).
"""
