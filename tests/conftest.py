"""Shared fixtures: small synthetic NIfTI scans and a tiny project that ran every stage."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
IXI = SHARED / "ixi-t1"

# Small enough for CPU CI: 6 mm template, a 3-stage network, two epochs.
TINY_OVERRIDES: dict[str, Any] = {
    "demo": {"n_subjects": 10},
    "split": {"calibration_fraction": 0.3, "test_fraction": 0.2},
    "template": {"resolution_mm": 6.0, "crop_shape": [32, 32, 32]},
    # a 6 mm template grid blurs the brain outline: registration QC is looser there
    "prepare": {"workers": 1, "registration": {"min_containment": 0.75}},
    "model": {"channels": [4, 8, 8], "latent_channels": 4},
    "train": {"epochs": 2, "batch_size": 2, "checkpoint_every": 1},
    "scoring": {"std_smoothing_sigma_vox": 1.0, "restoration": {"steps": 3}},
    "report": {"max_cases": 2},
    "evaluate": {"sites": {"scans": 1}},
    "generative": {"interpolation_steps": 4, "impute": {"steps": 3}, "iwae_samples": 2,
                   "checks": {"samples": 4, "impute_scans": 1, "iwae_k": [1, 4],
                              "iwae_scans": 1}},
    "mlflow": {"registered_model": "vae-anomaly-test"},
}


def oblique_affine(spacing: tuple[float, float, float], angle_deg: float = 20.0,
                   origin: tuple[float, float, float] = (-60.0, -70.0, -50.0)) -> np.ndarray:
    """A LPI-ish, rotated, anisotropic affine (shear-free)."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    flip = np.diag([-1.0, 1.0, -1.0])
    affine = np.eye(4)
    affine[:3, :3] = rot @ flip @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def phantom(shape: tuple[int, int, int] = (40, 48, 36), seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
    """A brain-like ellipsoid with an inner dark 'ventricle' and noise; returns (image, mask)."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(sum(g**2 for g in grid))
    mask = r < 0.8
    image = np.where(mask, 100.0 + 20 * grid[0], 0.0)
    image[r < 0.25] = 30.0
    image = image + rng.normal(0, 2.0, shape) * mask
    return image.astype(np.float32), mask


@pytest.fixture
def scan_file(tmp_path: Path) -> tuple[Path, Path]:
    image, mask = phantom()
    affine = oblique_affine((2.2, 1.8, 2.5))
    img_path, mask_path = tmp_path / "scan.nii.gz", tmp_path / "scan_mask.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), img_path)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), mask_path)
    return img_path, mask_path


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_project(root: Path, overrides: dict[str, Any]) -> Path:
    """A project folder with configs/: the repo's params.yaml with ``overrides`` merged in,
    and the repo's presets (its ``preset``, demo, chooses one). Overrides of keys a preset
    sets land in params.yaml, whose keys win over the preset's (configs/params.yaml's
    header), as ``dvc exp run -S 'configs/params.yaml:++key=value'`` would put them."""
    (root / "configs").mkdir(parents=True)
    params = yaml.safe_load((REPO / "configs" / "params.yaml").read_text())
    params = _merge(params, overrides)
    (root / "configs" / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(REPO / "configs" / "presets", root / "configs" / "presets")
    return root / "configs" / "params.yaml"


def with_preset(root: Path, preset: str) -> Path:
    """A copy of the repo's configs/ under ``root`` whose params.yaml chooses ``preset``."""
    shutil.copytree(REPO / "configs", root / "configs")
    path = root / "configs" / "params.yaml"
    text = path.read_text()
    assert "\npreset: demo\n" in text
    path.write_text(text.replace("\npreset: demo\n", f"\npreset: {preset}\n"))
    return path


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run cohort → prepare → train (VAE and autoencoder baseline) → calibrate → validate →
    evaluate → generative → report on a tiny demo cohort."""
    from pipeline.cli import main

    root = tmp_path_factory.mktemp("project")
    params_file = make_project(root, TINY_OVERRIDES)
    old_cwd, old_env = Path.cwd(), dict(os.environ)
    os.chdir(root)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["VAE_ANOMALY_ROOT"] = str(root)
    try:
        for stage in ("cohort", "prepare", "train", "train --autoencoder", "calibrate",
                      "validate", "evaluate", "generative", "report"):
            assert main([*stage.split(), "--params", str(params_file)]) == 0, stage
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
    return root


INTEGRATION = Path(__file__).resolve().parent / "integration"
TINY_PROJECT_FIXTURES = {"tiny_project", "in_project", "project_copy"}
DVC_REPRO_FIXTURES = {"original", "clone"}  # integration/test_dvc.py: two `dvc repro` each


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers by location (declared in pyproject.toml): every test under tests/integration is
    an integration test, so `pytest -m "not integration"` runs the unit tests alone; the tests
    on the projects that `dvc repro` built are slow. A test elsewhere that uses the tiny project
    (it ran the whole pipeline) is refused: it belongs under tests/integration."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)
            if fixtures & DVC_REPRO_FIXTURES:
                item.add_marker(pytest.mark.slow)
        elif fixtures & TINY_PROJECT_FIXTURES:
            raise pytest.UsageError(f"{item.nodeid} uses the tiny project: move it under "
                                    f"tests/integration")


def _enter(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("VAE_ANOMALY_ROOT", str(root))
    if "mlflow" in sys.modules:  # MLflow keeps the last store it was pointed at
        sys.modules["mlflow"].set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        # and each run's artifact folder: a copied project's runs have the same ids
        from mlflow.tracking._tracking_service import utils

        utils._artifact_repos_cache.clear()
    return root


@pytest.fixture
def in_project(tiny_project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared tiny project, as the working project; tests must not change it (those that
    do use :func:`project_copy`)."""
    return _enter(tiny_project, monkeypatch)


MLFLOW_PATH_COLUMNS = {"runs": ("artifact_uri",), "experiments": ("artifact_location",),
                       "model_versions": ("source", "storage_location")}


@pytest.fixture
def project_copy(tiny_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the tiny project (its MLflow store pointing at its own artifacts),
    as the working project, for tests that train, register or rewrite reports."""
    import sqlite3

    root = tmp_path / "project"
    shutil.copytree(tiny_project, root, symlinks=True)
    con = sqlite3.connect(root / "mlflow.db")
    with con:
        for table, columns in MLFLOW_PATH_COLUMNS.items():
            for column in columns:
                con.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                            (str(tiny_project), str(root)))
    con.close()
    return _enter(root, monkeypatch)
