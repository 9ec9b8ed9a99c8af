"""Serving a calibrated model outside the CLI: the MLflow model (``mlflow.pyfunc``) that every
registered version is. ``packaging`` writes it (``calibrate`` registers it); ``mlflow_model``
is its code, which scores through the scoring service."""
