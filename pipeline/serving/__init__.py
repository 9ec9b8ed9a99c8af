"""Serving a calibrated model outside the CLI: the MLflow model (``mlflow.pyfunc``) that every
registered version is. It builds on the ``score`` command and is built by ``calibrate``."""
