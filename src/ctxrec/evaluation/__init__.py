"""Evaluation: pure ranking/pointwise metrics and an evaluator over any Recommender."""
