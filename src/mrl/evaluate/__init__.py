"""Per-dimension evaluation: head accuracy, retrieval metrics, probes and baselines."""
