"""Difficulty and stakes scoring for moa-router: features, scorer, training, evaluation."""
