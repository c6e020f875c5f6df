"""The pipeline: a short list of stages run on hosts by a strategy, reported as events."""
