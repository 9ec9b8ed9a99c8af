"""Integration: the domain check on the tiny project; harmonisation kept with the model; the
evaluation of simulated other sites."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from pipeline.cli import main


def _healthy_test_scan(root: Path) -> tuple[Path, Path]:
    split = json.loads((root / "data" / "prepared" / "split.json").read_text())
    case = split["test_healthy"][0]
    return Path(case["image"]), Path(case["mask"])


def test_a_scan_of_another_contrast_is_out_of_distribution(in_project: Path, tmp_path: Path,
                                                           capsys) -> None:
    scan, mask = _healthy_test_scan(in_project)
    img = nib.load(scan)
    data = np.asarray(img.dataobj, np.float32)
    brain = np.asarray(nib.load(mask).dataobj) > 0
    top = float(np.percentile(data[brain], 99))
    inverted = np.where(brain, np.clip(top - data, 0, None), 0)   # CSF bright, as in a T2
    other = tmp_path / "other_T2.nii.gz"
    nib.save(nib.Nifti1Image(inverted.astype(np.float32), img.affine, img.header), other)
    out = tmp_path / "results"
    assert main(["score", str(scan), str(other), "--brain-mask", str(mask), "--brain-mask",
                 str(mask), "--out", str(out)]) == 0
    healthy = json.loads((out / f"{scan.name.removesuffix('.nii.gz')}.json").read_text())
    assert healthy["domain"]["in_distribution"] is True
    assert healthy["verdict"] in ("normal", "abnormal")
    ood = json.loads((out / "other_T2.json").read_text())
    assert ood["verdict"] == "out of distribution" and not ood["domain"]["in_distribution"]
    assert "grey_white_contrast" in ood["domain"]["outside"]
    low = ood["domain"]["statistics"]["grey_white_contrast"]["healthy_range"][0]
    assert ood["domain"]["statistics"]["grey_white_contrast"]["value"] < low
    assert any(w.startswith("out of distribution") for w in ood["warnings"])
    assert "Out of distribution." in (out / "other_T2.html").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["verdict"]["out of distribution"] == 1
    assert [e["verdict"] for e in manifest["inputs"]][1] == "out of distribution"
    assert "out of distribution" in capsys.readouterr().err


def test_the_standard_scale_is_learned_on_training_scans_and_kept_with_the_model(
        tiny_project: Path) -> None:
    prepared = tiny_project / "data" / "prepared"
    scale = json.loads((prepared / "harmonisation.json").read_text())
    split = json.loads((prepared / "split.json").read_text())
    assert scale["method"] == "nyul" and scale["n_scans"] == len(split["train"])
    model = json.loads((tiny_project / "models" / "vae" / "model.json").read_text())
    assert model["harmonisation"] == scale
    case = split["calibration"][0]["id"]
    image = np.asarray(nib.load(prepared / "cases" / f"{case}.nii.gz").dataobj)
    brain = np.asarray(nib.load(prepared / "cases" / f"{case}_brain.nii.gz").dataobj) > 0
    marks = np.quantile(image[brain], scale["quantiles"])
    assert np.allclose(marks, scale["landmarks"], atol=0.02)
    record = json.loads((prepared / "cases" / f"{case}.json").read_text())
    assert len(record["harmonisation_landmarks"]) == len(scale["quantiles"])
    calib = json.loads((tiny_project / "models" / "vae" / "calibration.json").read_text())
    assert set(calib["domain"]) == {"grey_white_contrast", "reconstruction_error"}


def test_evaluate_reports_every_simulated_site(tiny_project: Path) -> None:
    metrics = json.loads((tiny_project / "reports" / "metrics.json").read_text())
    sites = metrics["sites"]
    assert list(sites) == ["unmodified", "resampled", "thick_slices", "derived_mask",
                           "loose_mask", "gamma", "n4"]
    for name, row in sites.items():
        assert row["n_healthy"] + len(row["failed"]) >= 1, name
        if row["n_healthy"]:
            assert row["healthy_flagged_ml_mean"] >= row["healthy_flagged_rim_ml_mean"] >= 0
        if "voxel_auprc" in row:
            assert 0 <= row["voxel_auprc"] <= 1 and 0 <= row["best_dice"] <= 1, name
    assert set(metrics["out_of_distribution"]) == {"test_healthy", "test_lesion"}


def test_a_model_folder_from_before_harmonisation_loads_without_it(in_project: Path,
                                                                   tmp_path: Path) -> None:
    import shutil

    from pipeline.modelstore.loading import load_model
    from pipeline.preprocess.harmonise import NONE

    folder = tmp_path / "old"
    shutil.copytree(in_project / "models" / "vae", folder)
    meta = json.loads((folder / "model.json").read_text())
    meta.pop("harmonisation")
    # a folder of format 2 stored the whole experiment's parameters, before these keys existed
    meta["format"] = "vae-anomaly/2"
    meta["params"]["evaluate"] = {"extra_cases": [{"image": "../shared/data/x.nii.gz"}]}
    for section, key in (("prepare", "harmonise"), ("train", "site")):
        meta["params"][section].pop(key)
    (folder / "model.json").write_text(json.dumps(meta))
    calib = json.loads((folder / "calibration.json").read_text())
    calib.pop("domain")
    (folder / "calibration.json").write_text(json.dumps(calib))
    loaded = load_model(folder)
    assert loaded.preprocessor.scale is NONE and loaded.params.prepare.harmonise.method == "none"
    assert loaded.params.train.site.probability == 0.0
    assert not hasattr(loaded.params, "evaluate")  # the experiment's sections are dropped
    assert loaded.calibrated().domain == {}
