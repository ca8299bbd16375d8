"""Orchestration: the plan (every check before training), the stores, teachers and
baselines, trials in this process or in trainer processes, repeats, worker processes and
signals. The only layer that uses the trainer, the search loop and the tracker together."""
