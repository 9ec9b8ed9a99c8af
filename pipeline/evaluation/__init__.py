"""Evaluation: held-out test cases, real lesion cases, simulated sites and other modalities,
scored through the scoring service and measured (metrics with bootstrap intervals)."""
