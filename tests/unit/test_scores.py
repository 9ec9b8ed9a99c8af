"""Score types, restoration, normative calibration and the evaluation metrics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.config.kinds import KINDS, MODEL_KINDS
from pipeline.config.params import load_params
from pipeline.config.scoring_schema import RestorationParams
from pipeline.evaluation.metrics import Pooled, lesions_found
from pipeline.model.network import ConvVAE
from pipeline.model.objective import Likelihood
from pipeline.model.restoration import frozen, restore
from pipeline.scoring.raw import raw_scores

SHAPE = (16, 16, 16)


def _brain() -> np.ndarray:
    zz, yy, xx = np.mgrid[:16, :16, :16]
    return ((zz - 7.5) ** 2 + (yy - 7.5) ** 2 + (xx - 7.5) ** 2) < 6.5**2


def _image(seed: int, blob: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = (_brain() * (0.6 + 0.05 * rng.standard_normal(SHAPE))).astype(np.float32)
    if blob:
        img[6:10, 6:10, 6:10] = 1.4
    return img


def _vae() -> ConvVAE:
    torch.manual_seed(0)
    vae = ConvVAE([4, 8], latent_channels=2, image_shape=SHAPE)
    vae.init_mean_image(torch.from_numpy(np.stack([_image(i) for i in range(4)]))[:, None])
    return vae.eval()


@pytest.fixture(scope="module")
def sp():  # type: ignore[no-untyped-def]
    p = load_params().scoring
    return dataclasses.replace(p, mc_samples=3, erode_brain_vox=0, std_smoothing_sigma_vox=0.0,
                               restoration=RestorationParams(steps=5, step_size=0.5,
                                                             consistency=0.05))


def test_every_score_type_gives_a_finite_nonnegative_map_inside_the_brain(sp) -> None:
    raw = raw_scores(_vae(), Likelihood("gaussian", 0.1), _image(0, blob=True), _brain(),
                     set(KINDS), sp, seed=3)
    assert set(raw.maps) == set(KINDS)
    for name, m in raw.maps.items():
        assert m.shape == SHAPE and m.dtype == np.float32, name
        assert np.isfinite(m).all(), name
        assert not m[~raw.region].any(), name  # zero outside the scored region
        if name != "intensity_normative":     # the raw intensity itself may be anything
            assert (m >= 0).all(), name
    assert raw.restored is not None and raw.uncertainty is not None
    assert raw.negative_elbo is not None and np.isfinite(raw.negative_elbo)
    # a bright blob the (untrained) model cannot explain stands out in the model scores
    blob = np.zeros(SHAPE, bool)
    blob[6:10, 6:10, 6:10] = True
    for name in ("residual", "combi", "restoration", "intensity"):
        assert raw.maps[name][blob].mean() > 1.5 * raw.maps[name][raw.region & ~blob].mean(), name


def test_posterior_samples_are_seeded(sp) -> None:
    vae, lik, img = _vae(), Likelihood("gaussian", 0.1), _image(1)
    a = raw_scores(vae, lik, img, _brain(), {"residual"}, sp, seed=5).maps["residual"]
    b = raw_scores(vae, lik, img, _brain(), {"residual"}, sp, seed=5).maps["residual"]
    c = raw_scores(vae, lik, img, _brain(), {"residual"}, sp, seed=6).maps["residual"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_model_scores_need_a_model(sp) -> None:
    with pytest.raises(ValueError, match="need a model"):
        raw_scores(None, None, _image(0), _brain(), {"combi"}, sp)
    assert set(MODEL_KINDS) == {k for k, v in KINDS.items() if v.needs_model}


def test_restoration_keeps_explained_voxels_and_frees_unweighted_ones() -> None:
    vae, lik = _vae(), Likelihood("gaussian", 0.1)
    x = torch.from_numpy(_image(2, blob=True))[None, None]
    region = torch.from_numpy(_brain().astype(np.float32))[None, None]
    strict = RestorationParams(steps=4, step_size=0.5, consistency=1e6)  # λ huge: no change
    assert torch.equal(restore(vae, lik, x, region, strict, consistency_weight=region), x)
    free = restore(vae, lik, x, region, strict, consistency_weight=torch.zeros_like(x))
    assert not torch.equal(free, x)
    assert torch.equal(free[region == 0], x[region == 0])  # outside the region: untouched
    with torch.no_grad():
        rec = vae(x, sample=False).reconstruction
    blob = x > 1.2
    # freed voxels move towards what the model explains
    assert (free - rec)[blob].abs().mean() < (x - rec)[blob].abs().mean()


def test_frozen_restores_the_model_state() -> None:
    vae = _vae().train()
    with frozen(vae):
        assert not vae.training
        assert not any(p.requires_grad for p in vae.parameters())
    assert vae.training and all(p.requires_grad for p in vae.parameters())


def test_lesions_found_counts_overlapped_components() -> None:
    truth = np.zeros((10, 10, 10), bool)
    truth[1:3, 1:3, 1:3] = True
    truth[6:9, 6:9, 6:9] = True
    mask = np.zeros_like(truth)
    mask[7, 7, 7] = True
    assert lesions_found(mask, truth) == (1, 2)
    assert lesions_found(mask, np.zeros_like(truth)) == (0, 0)


def test_pooled_metrics() -> None:
    p = Pooled()
    p.add_healthy(np.r_[np.ones(1), np.zeros(99)].astype(bool), 0.5)
    scores = np.r_[np.full(10, 5.0), np.zeros(90)]
    labels = np.r_[np.ones(10), np.zeros(90)].astype(bool)
    p.add_lesioned(scores, labels, scores > 1, 3.0, (2, 3))
    m = p.summary(20, curve_points=5)
    assert m["voxel_auprc"] == pytest.approx(1.0) and m["best_dice"] == pytest.approx(1.0)
    assert m["dice_at_calibrated_threshold"] == pytest.approx(1.0)
    assert m["healthy_voxel_fpr"] == pytest.approx(0.01)
    assert m["lesion_detection_rate"] == pytest.approx(2 / 3)
    assert m["scan_auroc"] == 1.0 and p.roc and p.pr


@pytest.mark.parametrize("score, ok", [
    (["nll", "intensity_normative"], True), (["restoration"], True),
    (["intensity_normative"], False),      # no model in the map
    (["nll", "intensity"], False),         # not calibrated: cannot be averaged with z-scores
    (["bogus"], False), ([], False)])
def test_primary_score_is_validated(score: list[str], ok: bool) -> None:
    from pipeline.config.params import ConfigError, load_raw, params_from_dict

    raw = load_raw()
    raw["scoring"]["score"] = score
    if ok:
        assert params_from_dict(raw).scoring.score == score
    else:
        with pytest.raises(ConfigError, match=r"scoring\.score"):
            params_from_dict(raw)


def test_the_drawn_pr_curve_has_the_area_of_the_auprc() -> None:
    from pipeline.evaluation.metrics import curves

    rng = np.random.default_rng(1)
    labels = rng.random(300_000) < 0.003          # rare lesion voxels, as in the demo
    scores = np.where(labels, rng.normal(1.0, 1.5, labels.size), rng.normal(0, 1, labels.size))
    areas, roc, pr = curves(scores, labels, 200)
    recall = np.array([p["recall"] for p in pr])
    precision = np.array([p["precision"] for p in pr])
    order = np.argsort(recall)
    drawn = float(np.trapezoid(precision[order], recall[order]))
    assert drawn == pytest.approx(areas["auprc"], abs=0.01)
    assert len(pr) <= 202 and recall.min() == 0.0 and recall.max() == 1.0  # ends kept
    assert roc[0] == {"fpr": 0.0, "tpr": 0.0} and roc[-1] == {"fpr": 1.0, "tpr": 1.0}
