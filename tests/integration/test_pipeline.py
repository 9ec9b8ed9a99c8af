"""Integration: every stage on a tiny demo cohort, and the scoring CLI's contract."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from pipeline.cli import main
from pipeline.config.params import load_params

pytestmark = pytest.mark.integration


def test_stages_write_their_outputs(tiny_project: Path) -> None:
    root = tiny_project
    split = json.loads((root / "data" / "prepared" / "split.json").read_text())
    assert split["train"] and split["calibration"] and split["test_lesion"]
    subjects = {c["subject"]: c["split"] for part in ("train", "calibration", "test_healthy")
                for c in split[part]}
    assert len(subjects) == 10  # every subject in exactly one split
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    for key in ("voxel_auroc", "voxel_auprc", "best_dice", "dice_at_calibrated_threshold",
                "scan_auroc", "healthy_voxel_fpr"):
        assert key in metrics
    assert 0.0 <= metrics["voxel_auroc"] <= 1.0
    assert (root / "reports" / "plots" / "roc.csv").read_text().startswith("fpr,tpr")
    assert (root / "reports" / "index.html").is_file()
    assert list((root / "reports" / "cases").glob("*.html"))
    model = json.loads((root / "models" / "vae" / "model.json").read_text())
    assert model["trained_on"]["modality"] == "T1w"
    # no run id or version number in DVC outputs: any clone makes the same files
    assert set(model["mlflow"]) == {"experiment", "registered_model"}
    assert (root / "models" / "vae" / "calibration.json").is_file()


def test_evaluate_compares_every_score_type_with_the_baselines(tiny_project: Path) -> None:
    metrics = json.loads((tiny_project / "reports" / "metrics.json").read_text())
    params = load_params(tiny_project / "configs" / "params.yaml")
    table = metrics["score_types"]
    assert set(table) == {*params.scoring.compare, metrics["score"], "autoencoder"}
    assert metrics["score"] == "+".join(params.scoring.score)
    for name, row in table.items():
        assert 0.0 <= row["voxel_auroc"] <= 1.0, name
        assert 0.0 <= row["healthy_voxel_fpr"] <= 1.0, name
        assert row["n_lesions"] >= 1 and 0.0 <= row["lesion_detection_rate"] <= 1.0, name
    assert metrics["voxel_auprc"] == table[metrics["score"]]["voxel_auprc"]
    rows = (tiny_project / "reports" / "score_comparison.csv").read_text().splitlines()
    assert len(rows) == len(table) + 1
    ae = json.loads((tiny_project / "models" / "autoencoder" / "model.json").read_text())
    assert ae["params"]["train"]["beta"] == 0.0
    assert ae["mlflow"]["registered_model"] == "vae-anomaly-test-autoencoder"


def test_validate_scores_every_map_on_realistic_lesions_in_calibration_scans(
        tiny_project: Path) -> None:
    result = json.loads((tiny_project / "reports" / "validation.json").read_text())
    split = json.loads((tiny_project / "data" / "prepared" / "split.json").read_text())
    calibration = {c["id"] for c in split["calibration"]}
    assert {c["case"] for c in result["cases"]} <= calibration  # never a test scan
    assert result["primary"] in result["maps"]
    maps = result["maps"][result["primary"]]
    assert "lesions" in maps and "atrophy" in maps
    pooled = maps["lesions"]
    assert 0.0 <= pooled["voxel_auroc"] <= 1.0 and pooled["n_lesions"] >= 1
    assert maps["atrophy"]["flagged_ml_mean"] >= 0.0
    assert maps["atrophy"]["n_scans"] == result["n_scans"]
    rows = (tiny_project / "reports" / "validation.csv").read_text().splitlines()
    assert rows[0].startswith("map,kind,voxel_auroc")
    assert len(rows) == 1 + sum(len(k) for k in result["maps"].values())


def test_real_pathology_comes_first_in_metrics(tiny_project: Path) -> None:
    metrics = json.loads((tiny_project / "reports" / "metrics.json").read_text())
    assert next(iter(metrics)) == "extra_cases"


def test_extra_lesion_case_is_prepared_and_scored(project_copy: Path) -> None:
    import dataclasses

    in_project = project_copy
    from pipeline.config.scoring_schema import ExtraCase
    from pipeline.evaluation.testset import HeldOutSet
    from pipeline.modelstore.loading import load_model

    loaded = load_model(in_project / "models" / "vae")
    image = sorted((in_project / "data" / "prepared" / "lesioned").glob("*_T1.nii.gz"))[0]
    truth = image.with_name(image.name.replace("_T1", "_lesion"))
    case = ExtraCase(name="real", image=str(image), lesion_mask=str(truth), brain_mask="")
    params = load_params(in_project / "configs" / "params.yaml")
    params = dataclasses.replace(
        params, scoring=dataclasses.replace(params.scoring, compare=["residual", "intensity"]),
        evaluate=dataclasses.replace(params.evaluate, n_thresholds=20, rim_mm=4.0))
    out = HeldOutSet(loaded, None, params).extra_case(case)
    assert out is not None and out["lesion_volume_ml"] > 0
    assert out["verdict"] in ("normal", "abnormal", "out of distribution")
    assert 0 <= out["flagged_rim_ml"] <= out["flagged_outside_lesions_ml"]
    primary = loaded.calibration.primary if loaded.calibration else ""
    assert {primary, "residual", "intensity"} <= set(out)
    assert 0.0 <= out[primary]["voxel_auroc"] <= 1.0
    info = json.loads((in_project / "data" / "evaluation" / "extra-real.json").read_text())
    assert info["split"] == "extra" and info["truth"] == str(truth)
    # the report stage renders it, known lesions outlined, linked from the cohort page
    from pipeline.stages import report

    params = dataclasses.replace(params, evaluate=dataclasses.replace(params.evaluate,
                                                                      extra_cases=[case]))
    metrics_file = in_project / "reports" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics_file.write_text(json.dumps({**metrics, "extra_cases": {"real": out}}))
    report.run(params)
    page = (in_project / "reports" / "cases" / "extra-real.html").read_text()
    assert "Green outline: known lesions" in page
    assert "href='cases/extra-real.html'" in (in_project / "reports" / "index.html").read_text()
    missing = ExtraCase(name="gone", image="nowhere.nii.gz", lesion_mask="x.nii.gz",
                        brain_mask="")
    assert HeldOutSet(loaded, None, params).extra_case(missing) is None


def test_the_champion_is_a_calibrated_mlflow_model(in_project: Path, tmp_path: Path) -> None:
    """The registered version is an MLflow model: pyfunc loads it, ``predict`` scores NIfTI
    paths into a folder as ``score`` does, and ``mlflow models predict`` takes a JSON list."""
    import subprocess

    import mlflow
    from mlflow import MlflowClient

    from pipeline.config import paths
    from pipeline.io.atomic import sha256

    mlflow.set_tracking_uri(paths.default_tracking_uri())
    mv = MlflowClient().get_model_version_by_alias("vae-anomaly-test", "champion")
    assert mv.tags["calibrated"] == "true" and "T1w" in mv.description
    assert mv.tags["weights_sha256"] == sha256(in_project / "models" / "vae" /
                                               "weights.safetensors")
    model = mlflow.pyfunc.load_model("models:/vae-anomaly-test@champion")
    assert {i.name for i in model.metadata.get_input_schema().inputs} == {"scan", "brain_mask"}
    scan = _lesioned_scan(in_project)
    rows = model.predict({"scan": [str(scan), str(tmp_path / "missing.nii.gz")]},
                         params={"out": str(tmp_path / "py"), "report": False})
    assert list(rows["status"]) == ["scored", "failed"]
    summary = json.loads(Path(rows["summary"][0]).read_text())
    assert rows["verdict"][0] == summary["verdict"] and rows["scan_score"][0] == pytest.approx(
        summary["scan_score"])
    assert main(["score", str(scan), "--out", str(tmp_path / "cli"), "--no-report"]) == 0
    cli = json.loads((tmp_path / "cli" / Path(rows["summary"][0]).name).read_text())
    assert cli["scan_score"] == pytest.approx(summary["scan_score"], rel=1e-5)
    request = tmp_path / "scans.json"
    request.write_text(json.dumps({"inputs": {"scan": [str(scan)]},
                                   "params": {"out": str(tmp_path / "served")}}))
    done = subprocess.run(["mlflow", "models", "predict", "-m", "models:/vae-anomaly-test@champion",
                           "--env-manager", "local", "-i", str(request), "-t", "json",
                           "-o", str(tmp_path / "predictions.json")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_TRACKING_URI": paths.default_tracking_uri()})
    assert done.returncode == 0, done.stderr[-2000:]
    served = json.loads((tmp_path / "predictions.json").read_text())["predictions"]
    assert [r["status"] for r in served] == ["scored"]
    assert served[0]["scan_score"] == pytest.approx(summary["scan_score"], rel=1e-5)


def _lesioned_scan(root: Path) -> Path:
    return next((root / "data" / "prepared" / "lesioned").glob("*_T1.nii.gz"))


def test_score_writes_contract_outputs_on_the_input_grid(in_project: Path, tmp_path: Path,
                                                         capsys) -> None:
    scan = _lesioned_scan(in_project)
    out = tmp_path / "results"
    assert main(["score", str(scan), "--out", str(out)]) == 0  # default: champion in mlflow.db
    s = scan.name[: -len(".nii.gz")]
    src = nib.load(scan)
    for suffix, dtype in (("_anomaly.nii.gz", np.float32), ("_anomaly_mask.nii.gz", np.uint8)):
        img = nib.load(out / f"{s}{suffix}")
        assert img.shape == src.shape
        np.testing.assert_allclose(img.affine, src.affine, atol=1e-6)
        assert img.get_data_dtype() == dtype
    heat = np.asarray(nib.load(out / f"{s}_anomaly.nii.gz").dataobj)
    assert heat.min() >= 0 and np.all(heat[np.asarray(src.dataobj) == 0] == 0)
    info = json.loads((out / f"{s}.json").read_text())
    for key in ("scan_score", "threshold", "is_abnormal", "model", "trained_on", "timings_s"):
        assert key in info
    assert info["trained_on"]["cohort"]
    assert info["model"]["version"] == "1" and info["model"]["uri"].startswith("models:/")
    assert capsys.readouterr().err == ""
    # score registers with the template stored in the model exactly as prepare did
    case = s.removesuffix("_T1")
    record = json.loads((in_project / "data" / "prepared" / "cases" / f"{case}.json").read_text())
    assert info["registration"]["dice_with_template_brain"] == record["registration_dice"]
    # findings: one per connected component of the mask, with its volume and location
    mask = np.asarray(nib.load(out / f"{s}_anomaly_mask.nii.gz").dataobj)
    voxel_ml = float(np.prod(src.header.get_zooms()[:3])) / 1000
    assert sum(f["voxels"] for f in info["findings"]) == int(mask.sum())
    for f in info["findings"]:
        assert f["volume_ml"] == pytest.approx(f["voxels"] * voxel_ml, abs=1e-3)
        assert mask[tuple(f["peak_voxel"])] == 1 and f["hemisphere"] in ("left", "right",
                                                                          "midline")
        assert len(f["centroid_mni"]) == 3
    html = (out / f"{s}.html").read_text()
    assert "data:image/png;base64," in html and "radiological convention" in html
    assert f"<h2>Findings ({len(info['findings'])})</h2>" in html
    assert main(["score", str(scan), "--out", str(tmp_path / "neuro"), "--convention",
                 "neurological"]) == 0
    assert "neurological convention" in (tmp_path / "neuro" / f"{s}.html").read_text()


def test_batch_with_bad_inputs(in_project: Path, tmp_path: Path, capsys) -> None:
    good = _lesioned_scan(in_project)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not an image")
    missing = tmp_path / "missing.nii.gz"
    out = tmp_path / "results"
    code = main(["score", str(broken), str(good), str(missing), "--out", str(out),
                 "--model", str(in_project / "models" / "vae"), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert str(broken) in err[0] and "Traceback" not in "".join(err)
    names = sorted(p.name for p in out.iterdir())
    assert not any(n.startswith("broken") or n.startswith("missing") for n in names)
    assert len(names) == 4  # heatmap, mask, json of the good scan (no report asked), manifest
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(e["input"], e["status"]) for e in manifest["inputs"]] == [
        (str(broken), "failed"), (str(good), "scored"), (str(missing), "failed")]
    assert manifest["inputs"][0]["error"] in err[0]


def test_usage_errors_exit_2(in_project: Path, tmp_path: Path, capsys) -> None:
    scan = _lesioned_scan(in_project)
    assert main(["score", str(scan), "--out", str(tmp_path), "--model", "nowhere"]) == 2
    assert main(["score", str(scan), "--out", str(tmp_path),
                 "--brain-mask", str(scan), "--brain-mask", str(scan)]) == 2
    assert main(["score"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 3


def test_tampered_model_is_refused(in_project: Path, tmp_path: Path) -> None:
    import shutil

    from pipeline.modelstore.loading import load_model
    from pipeline.modelstore.types import ModelError

    folder = tmp_path / "model"
    shutil.copytree(in_project / "models" / "vae", folder)
    load_model(folder)  # intact: loads
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        load_model(folder)


def test_scores_are_reproducible(in_project: Path, tmp_path: Path) -> None:
    scan = _lesioned_scan(in_project)
    maps = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert main(["score", str(scan), "--out", str(out), "--no-report",
                     "--model", str(in_project / "models" / "vae")]) == 0
        maps.append(np.asarray(nib.load(next(out.glob("*_anomaly.nii.gz"))).dataobj))
    # bit-identical (README "Determinism"): SimpleITK registers on one thread
    assert maps[0].any() and np.array_equal(maps[0], maps[1])


def test_train_resume_and_recalibration_never_change_a_registered_version(
        project_copy: Path) -> None:
    """`train --resume` (what dvc.yaml runs) after a finished run trains no epoch again and
    logs into the same MLflow run without registering anything; `calibrate` again with the
    same files returns the same version; a changed calibration is a new version (lineage tag
    ``recalibrates``) that takes the champion, and the earlier version's files and tags are
    exactly what they were."""
    from mlflow import MlflowClient

    from pipeline.config.params import load_params
    from pipeline.io.atomic import sha256

    name, client = "vae-anomaly-test", MlflowClient()

    def registered() -> dict[str, tuple[dict[str, str], dict[str, str]]]:
        """Each version's tags and the SHA-256 of each file of its model folder."""
        out = {}
        for mv in client.search_model_versions(f"name = '{name}'"):
            run = client.get_run(mv.run_id)
            folder = Path(run.info.artifact_uri.removeprefix("file://")) / \
                mv.source.removeprefix(f"runs:/{mv.run_id}/") / "artifacts" / "vae_model"
            files = {p.name: sha256(p) for p in folder.iterdir()}
            assert "calibration.json" in files, mv.source
            out[str(mv.version)] = (dict(mv.tags), files)
        return out

    history = json.loads((project_copy / "models" / "trained" / "history.json").read_text())
    exp = client.get_experiment_by_name(load_params().mlflow.experiment).experiment_id
    runs = {r.info.run_id for r in client.search_runs([exp])}
    before = registered()
    assert main(["train", "--resume"]) == 0
    assert json.loads((project_copy / "models" / "trained" / "history.json").read_text()
                      ) == history
    assert {r.info.run_id for r in client.search_runs([exp])} == runs  # the same run
    assert main(["calibrate"]) == 0
    assert registered() == before  # same files: no new version, nothing changed
    params = project_copy / "configs" / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    raw["calibrate"]["voxel_fpr"] = raw["calibrate"]["voxel_fpr"] * 2
    params.write_text(yaml.safe_dump(raw))
    assert main(["calibrate"]) == 0
    after = registered()
    assert {k: after[k] for k in before} == before
    (new,) = set(after) - set(before)
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == new and after[new][0]["recalibrates"] == max(before)
    assert "recalibration" in after[new][0]["champion_decision"]
    metrics = json.loads((project_copy / "reports" / "train_metrics.json").read_text())
    assert metrics["best_epoch"] >= 1 and metrics["val_negative_elbo"] == \
        pytest.approx(history[metrics["best_epoch"] - 1]["val_negative_elbo"])


def test_folders_of_format_1_are_migrated_and_new_ones_refused_when_malformed(
        in_project: Path, tmp_path: Path) -> None:
    """A format-1 folder (keys added later missing, the first calibration layout) loads with
    the values those models were built with; a current-format folder missing a key is
    refused with the key named, never filled with a default."""
    import shutil

    from pipeline.io.atomic import sha256, write_arrays
    from pipeline.modelstore.folder import CALIBRATION, CALIBRATION_JSON, MODEL_JSON
    from pipeline.modelstore.format import LEGACY_DEFAULTS
    from pipeline.modelstore.loading import load_model
    from pipeline.modelstore.types import ModelError

    folder = tmp_path / "old"
    shutil.copytree(in_project / "models" / "vae", folder)
    new = load_model(folder).calibration
    assert new is not None
    stats = new.stats["nll"]
    meta = json.loads((folder / MODEL_JSON).read_text())
    assert meta["format"] == "vae-anomaly/4"
    # only what the model keeps: no evaluation paths, no tracking or cohort settings
    assert set(meta["params"]) == {"seed", "template", "prepare", "model", "train", "scoring",
                                   "report", "generative"}
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    meta_missing = json.loads(json.dumps(meta))
    del meta_missing["params"]["generative"]["checks"]
    (broken / MODEL_JSON).write_text(json.dumps(meta_missing))
    with pytest.raises(ModelError, match=r"generative\.checks"):
        load_model(broken)
    meta_missing["format"] = "vae-anomaly/1"  # the same keys missing in an old folder: filled
    del meta_missing["params"]["train"]["free_bits"]
    (folder / MODEL_JSON).write_text(json.dumps(meta_missing))
    write_arrays(folder / CALIBRATION, {"mean": stats.mean, "std": stats.std})
    (folder / CALIBRATION_JSON).write_text(json.dumps({  # the first layout: one residual map
        "voxel_threshold": 2.5, "scan_threshold": 4.0, "healthy_scan_scores": [1.0, 2.0],
        "statistics_sha256": sha256(folder / CALIBRATION)}))
    old = load_model(folder)
    assert old.params.generative.checks.iwae_k == LEGACY_DEFAULTS["generative"]["checks"]["iwae_k"]
    assert old.params.train.free_bits == LEGACY_DEFAULTS["train"]["free_bits"] == 0.0
    calib = old.calibrated()
    assert calib.score == ["residual"] and calib.primary == "residual"
    assert calib.threshold == 2.5 and calib.scan_threshold == 4.0
    assert calib.info["precision"] == "float32"
    assert np.array_equal(calib.stats["residual"].mean, stats.mean)
