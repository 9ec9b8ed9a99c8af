"""Scoring new scans: the one service under the CLI, the MLflow model and evaluation."""
