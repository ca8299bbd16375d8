"""MLflow only: the study's experiment, its parent run, nested runs per trial, teacher and
baseline, batched metrics, and the tags that find them again."""
