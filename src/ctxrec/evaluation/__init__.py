"""Evaluation: pure ranking/pointwise metrics and an evaluator over anything that ranks items (no model code)."""
