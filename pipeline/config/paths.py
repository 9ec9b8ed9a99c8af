"""Where things live: every path the pipeline reads or writes is resolved here.

The project root is the nearest folder, from the working directory upwards, that holds
``configs/params.yaml``; outside a checkout it is the working directory itself.

Example:
    >>> from pipeline.config import paths
    >>> paths.project_root().joinpath("configs").name
    'configs'
"""

from __future__ import annotations

import os
from pathlib import Path

PARAMS_RELATIVE = Path("configs") / "params.yaml"


def project_root(start: Path | None = None) -> Path:
    """Return the project root (the folder holding ``configs/params.yaml``)."""
    env = os.environ.get("VAE_ANOMALY_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_RELATIVE).is_file():
            return folder
    return here


def resolve(path: str | Path, root: Path | None = None) -> Path:
    """Resolve ``path`` against the project root unless it is absolute."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (root or project_root()) / p


def stored(path: str | Path, root: Path | None = None) -> str:
    """How ``path`` is written into an output: relative to the project root, POSIX.

    A path inside the root becomes relative to it; one outside it that came from a relative
    parameter (``root/../shared/x`` from ``../shared/x``) keeps that relative form; a relative
    path is already relative to the root; only a path given absolute outside the root stays
    absolute. :func:`resolve` reads any of them back. The empty string stays empty.

    Example:
        >>> stored(Path("/p/data/cohort/a.nii.gz"), Path("/p")), stored("/q/b", Path("/p"))
        ('data/cohort/a.nii.gz', '/q/b')
        >>> stored(Path("/p") / "../shared/c.nii.gz", Path("/p"))
        '../shared/c.nii.gz'
    """
    if not str(path):
        return ""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    base = root or project_root()
    for candidate, against in ((p, base), (p.resolve(), base.resolve())):
        try:  # lexically first: keeps the ``..`` of a relative parameter
            return candidate.relative_to(against).as_posix()
        except ValueError:
            continue
    return p.as_posix()


def params_file(root: Path | None = None) -> Path:
    return (root or project_root()) / PARAMS_RELATIVE


def data_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "data"


def cohort_dir(root: Path | None = None) -> Path:
    return data_dir(root) / "cohort"


def prepared_dir(root: Path | None = None) -> Path:
    return data_dir(root) / "prepared"


HEAD_ATLAS_FILE = "head_atlas.safetensors"  # in data/prepared/ and in every model folder
HARMONISATION_FILE = "harmonisation.json"   # in data/prepared/; its content in model.json


def prepare_cache_dir(root: Path | None = None) -> Path:
    """Per-scan results of ``prepare`` keyed by content (``VAE_ANOMALY_CACHE`` overrides)."""
    env = os.environ.get("VAE_ANOMALY_CACHE")
    return Path(env) / "prepare" if env else (root or project_root()) / ".cache" / "prepare"


def models_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "models"


def trained_model_dir(root: Path | None = None) -> Path:
    """The trained (not yet calibrated) model folder written by ``train``."""
    return models_dir(root) / "trained"


def model_dir(root: Path | None = None) -> Path:
    """The complete, calibrated model folder written by ``calibrate``."""
    return models_dir(root) / "vae"


def autoencoder_dir(root: Path | None = None) -> Path:
    """The plain-autoencoder baseline (β = 0), written by ``train --autoencoder``."""
    return models_dir(root) / "autoencoder"


def autoencoder_checkpoints_dir(root: Path | None = None) -> Path:
    return models_dir(root) / "checkpoints-autoencoder"


def checkpoints_dir(root: Path | None = None) -> Path:
    return models_dir(root) / "checkpoints"


def reports_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "reports"


def evaluation_dir(root: Path | None = None) -> Path:
    """Per-case maps written by ``evaluate`` and read by ``report``."""
    return data_dir(root) / "evaluation"


def generative_dir(root: Path | None = None) -> Path:
    """Samples and previews written by the ``generative`` stage."""
    return data_dir(root) / "generative"


def default_tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the embedded SQLite store in the project root."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(root or project_root()) / 'mlflow.db'}"


def artifact_root(root: Path | None = None) -> Path:
    return (root or project_root()) / "mlruns"
