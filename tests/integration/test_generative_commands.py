"""The generative commands (sample, interpolate, impute, loglik) and the generative stage on the
tiny trained project."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.generative import sampling as generative

# ---- commands on the tiny trained project -------------------------------------------------

def _scans(root: Path) -> tuple[Path, Path, Path]:
    split = json.loads((root / "data" / "prepared" / "split.json").read_text())
    a, b = split["train"][0], split["train"][1]
    return Path(a["image"]), Path(b["image"]), Path(a["mask"])


def test_sample_command(in_project: Path, tmp_path: Path) -> None:
    from pipeline.space.template import TEMPLATE_FILE, read_template

    tpl = read_template(in_project / "models" / "vae" / TEMPLATE_FILE)
    for out, seed in ((tmp_path / "a", "3"), (tmp_path / "b", "3"), (tmp_path / "c", "4")):
        assert main(["sample", "--n", "3", "--out", str(out), "--seed", seed]) == 0
    info = json.loads((tmp_path / "a" / "samples.json").read_text())
    assert [s["file"] for s in info["samples"]] == [f"sample_00{i}.nii.gz" for i in range(3)]
    assert info["trained_on"]["modality"] and info["temperature"] == 1.0
    img = nib.load(tmp_path / "a" / "sample_000.nii.gz")
    assert img.shape == tpl.shape and np.allclose(img.affine, tpl.affine)
    arrays = {k: np.asarray(nib.load(tmp_path / k / "sample_001.nii.gz").dataobj)
              for k in "abc"}
    assert np.array_equal(arrays["a"], arrays["b"]) and not np.array_equal(arrays["a"],
                                                                          arrays["c"])
    assert (tmp_path / "a" / "samples.png").stat().st_size > 0
    page = (tmp_path / "a" / "samples.html").read_text()
    assert "data:image/png;base64," in page and "http" not in page.split("</style>")[1]
    assert main(["sample", "--n", "0", "--out", str(tmp_path / "d")]) == 2
    assert main(["sample", "--n", "2", "--temperature", "nan", "--out", str(tmp_path / "d")]) == 2
    assert main(["sample", "--n", "2", "--seed", "-1", "--out", str(tmp_path / "d")]) == 2


def test_interpolate_command(in_project: Path, tmp_path: Path, capsys) -> None:
    a, b, _ = _scans(in_project)
    out = tmp_path / "path"
    assert main(["interpolate", str(a), str(b), "--steps", "4", "--out", str(out)]) == 0
    info = json.loads((out / "interpolation.json").read_text())
    assert set(info["paths"]) == {"linear", "spherical"}
    for mode, p in info["paths"].items():
        assert p["files"] == [f"{mode}_{i:02d}.nii.gz" for i in range(4)]
        assert all((out / f).is_file() for f in p["files"])
        assert len(p["step_fractions"]) == 3 and sum(p["step_fractions"]) >= 0.999
        assert 0 < p["endpoint_ssim"]["a"] <= 1 and 0 < p["endpoint_ssim"]["b"] <= 1
    assert (out / "input_a.nii.gz").is_file() and (out / "interpolation.html").is_file()
    assert main(["interpolate", str(a), str(tmp_path / "nope.nii.gz"), "--out",
                 str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope.nii.gz" in err[0]
    assert main(["interpolate", str(a), str(b), "--steps", "1", "--out", str(out)]) == 2


def test_a_failing_command_leaves_no_partial_outputs(in_project: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys) -> None:
    a, b, _ = _scans(in_project)
    calls = {"n": 0}
    real = generative.decode_mean

    def fail_on_second(*args, **kwargs):  # the linear path is written, then decoding fails
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(generative, "decode_mean", fail_on_second)
    out = tmp_path / "path"
    assert main(["interpolate", str(a), str(b), "--steps", "3", "--out", str(out)]) == 1
    assert list(out.iterdir()) == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory" in err[0]


def _cube_mask(scan: Path, brain: Path, path: Path) -> np.ndarray:
    img = nib.load(scan)
    mask = np.asarray(nib.load(brain).dataobj) > 0
    centre = np.argwhere(mask).mean(0).astype(int)
    cube = np.zeros(img.shape, np.uint8)
    cube[tuple(slice(c - 4, c + 4) for c in centre)] = 1
    nib.save(nib.Nifti1Image(cube, img.affine), path)
    return cube > 0


def test_impute_command_fills_only_the_hole_on_the_native_grid(in_project: Path,
                                                              tmp_path: Path, capsys) -> None:
    scan, _, brain = _scans(in_project)
    missing = _cube_mask(scan, brain, tmp_path / "hole.nii.gz")
    original = nib.load(scan)
    data = np.asarray(original.dataobj, np.float32)
    out = tmp_path / "filled"
    assert main(["impute", str(scan), "--mask", str(tmp_path / "hole.nii.gz"), "--out",
                 str(out), "--brain-mask", str(brain)]) == 0
    name = scan.name.removesuffix(".nii.gz")
    filled_img = nib.load(out / f"{name}_imputed.nii.gz")
    assert filled_img.shape == original.shape and np.array_equal(filled_img.affine,
                                                                 original.affine)
    filled = np.asarray(filled_img.dataobj, np.float32)
    assert np.array_equal(filled[~missing], data[~missing])
    assert np.isfinite(filled).all() and not np.allclose(filled[missing], data[missing])
    inside = data[np.asarray(nib.load(brain).dataobj) > 0]
    lo, hi = np.percentile(inside, [0.5, 99.5])
    assert lo - 0.5 * (hi - lo) < np.median(filled[missing]) < hi + 0.5 * (hi - lo)
    info = json.loads((out / f"{name}_imputed.json").read_text())
    assert info["missing_voxels"] == int(missing.sum())
    assert info["imputed_by_model"] + info["outside_brain_filled_from_surroundings"] == \
        info["missing_voxels"]
    # a mask on another grid: one error line, exit 1, nothing written
    bad = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((12, 12, 12), np.uint8), np.eye(4)), bad)
    capsys.readouterr()
    assert main(["impute", str(scan), "--mask", str(bad), "--out", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing-region mask bad.nii.gz: is not on the scan's grid" in err[0]
    assert not list((tmp_path / "o2").iterdir())


def test_imputation_maps_back_to_native_intensities(in_project: Path) -> None:
    """The template → native mapping of the imputation (registration + the intensity map
    fitted around the hole) reproduces the scan itself from its prepared image."""
    from pipeline.generative.imputation import impute_scan
    from pipeline.io.nifti import load_mask, load_scan
    from pipeline.modelstore.loading import load_model

    scan, _, brain_path = _scans(in_project)
    img = load_scan(scan)
    brain = load_mask(brain_path, img)
    missing = np.zeros(img.shape, bool)
    centre = np.argwhere(brain).mean(0).astype(int)
    missing[tuple(slice(c - 3, c + 3) for c in centre)] = True
    loaded = load_model(in_project / "models" / "vae")
    imp = impute_scan(loaded, img, missing, brain, loaded.params.generative.impute)
    back = imp.native_values(imp.prepared.image)
    data = np.asarray(img.dataobj, np.float32)
    from scipy import ndimage

    core = ndimage.binary_erosion(brain, iterations=2) & ~missing
    assert np.corrcoef(back[core], data[core])[0, 1] > 0.8


def test_loglik_command(in_project: Path, tmp_path: Path, capsys) -> None:
    a, b, _ = _scans(in_project)
    capsys.readouterr()
    args = ["loglik", str(a), str(tmp_path / "missing.nii.gz"), str(b), "--k", "3"]
    assert main([*args, "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].split("\t") == ["scan", "log_likelihood_nats", "bits_per_voxel", "k"]
    assert [line.split("\t")[0] for line in lines[1:]] == [str(a), str(b)]
    assert len(captured.err.strip().splitlines()) == 1 and "missing.nii.gz" in captured.err
    rows = json.loads((tmp_path / "loglik.json").read_text())["scans"]
    assert [r["k"] for r in rows] == [3, 3]
    assert main(["loglik", str(a), "--k", "3"]) == 0  # same seed: same figure
    assert capsys.readouterr().out.strip().splitlines()[1] == lines[1]
    assert main(["loglik", str(a), "--k", "0"]) == 2


def test_generative_stage_and_evaluate_log_likelihood(tiny_project: Path) -> None:
    gen = json.loads((tiny_project / "reports" / "generative.json").read_text())
    s = gen["samples"]
    assert s["n"] == 4 and len(s["nearest_training_ssim"]) == 4
    assert {"mean_rel_diff", "std_rel_diff", "within_tolerance"} <= set(s["decoder_mean"])
    assert set(gen["interpolation"]["paths"]) == {"linear", "spherical"}
    im = gen["imputation"]
    assert len(im["scans"]) == 1 and im["mae_vae"] > 0 and im["mae_template_mean"] > 0
    assert gen["iwae"]["k"] == ["1", "4"]
    assert len(list((tiny_project / "data" / "generative" / "samples").glob("*.nii.gz"))) == 4
    metrics = json.loads((tiny_project / "reports" / "metrics.json").read_text())
    ll = metrics["log_likelihood"]
    assert ll["k"] == 2 and ll["pairs"] == metrics["n_test_lesion"]
    assert ll["healthy_mean_nats"] is not None and 0 <= ll["lesioned_lower_fraction"] <= 1
    page = (tiny_project / "reports" / "index.html").read_text()
    assert "The VAE as a generative model" in page and "Imputation of a" in page
