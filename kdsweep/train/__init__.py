"""PyTorch only: the fit loop, fused groups, loss terms, feature taps, augmentation, cost
metrics, the model cache and the per-study trainer. Knows nothing of Optuna or MLflow:
it takes resolved settings and returns metrics (plus an epoch callback)."""
