"""Choosing a pattern: overlap analysis and the greedy search, on real models."""
