"""Optuna only: the storage (the one module allowed Optuna internals), samplers and
pruners, the trial handle and the ask-and-tell loop. Knows nothing of PyTorch or MLflow."""
