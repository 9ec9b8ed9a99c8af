"""Other sites: harmonisation, site simulation in training, the domain check, site variants."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import phantom

from pipeline.config.params import ConfigError, load_params, load_raw, params_from_dict
from pipeline.evaluation.sites import SiteScan, make_variant
from pipeline.io.errors import ScanError
from pipeline.model.sites import SiteSimulator, erode
from pipeline.preprocess.harmonise import NONE, harmonise, learn
from pipeline.scoring import domain


def _brains(n: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i in range(n):
        image, mask = phantom((24, 24, 24), seed=i)
        out.append(((image / image.max()).astype(np.float32), mask))
    return out


def test_harmonisation_puts_another_contrast_on_the_training_scale() -> None:
    hp = load_params().prepare.harmonise
    train = _brains()
    scale = learn(train, hp)
    image, brain = train[0]
    other = np.where(brain, image ** 2.0, 0).astype(np.float32)   # another contrast
    before = np.abs(np.quantile(other[brain], hp.quantiles) - scale.landmarks).max()
    out, own = harmonise(other, brain, scale, (-0.5, 2.0))
    after = np.abs(np.quantile(out[brain], hp.quantiles) - scale.landmarks).max()
    assert before > 0.1 and after < 0.02
    assert np.all(out[~brain] == 0)
    # the record inverts it: the scan's landmarks back onto its own intensities
    assert np.allclose(np.interp(np.quantile(out[brain], hp.quantiles), scale.landmarks, own),
                       np.quantile(other[brain], hp.quantiles), atol=0.02)


def test_harmonisation_none_is_the_identity_and_a_flat_brain_is_refused() -> None:
    image, brain = _brains(1)[0]
    assert harmonise(image, brain, NONE, (-0.5, 2.0))[0] is image
    scale = learn(_brains(), load_params().prepare.harmonise)
    with pytest.raises(ScanError, match="too little contrast"):
        harmonise(brain.astype(np.float32), brain, scale, (-0.5, 2.0))


def test_quantiles_must_increase() -> None:
    raw = load_raw()
    raw["prepare"]["harmonise"]["quantiles"] = [0.5, 0.2]
    with pytest.raises(ConfigError, match=r"prepare\.harmonise\.quantiles"):
        params_from_dict(raw)


def _patches() -> torch.Tensor:
    x = torch.zeros(3, 1, 16, 16, 16)
    x[:, :, 2:14, 2:14, 2:14] = torch.rand(3, 1, 12, 12, 12) * 0.5 + 0.3
    return x


def test_site_simulation_is_seeded_keeps_the_background_and_is_off_at_zero() -> None:
    sp = dataclasses.replace(load_params().train.site, probability=1.0)
    x = _patches()
    a = SiteSimulator(sp)(x, torch.Generator().manual_seed(1))
    b = SiteSimulator(sp)(x, torch.Generator().manual_seed(1))
    c = SiteSimulator(sp)(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.all(a[x == 0] == 0)
    assert (a != 0).sum() <= (x != 0).sum()            # the rim may be eroded, never grown
    off = dataclasses.replace(sp, probability=0.0)
    assert SiteSimulator(off)(x, torch.Generator()) is x


def test_erosion_removes_the_rim() -> None:
    brain = _patches() != 0
    assert int(erode(brain, 1)[0].sum()) == 10 ** 3
    assert torch.equal(erode(brain, 0), brain)


def test_domain_ranges_are_one_sided_and_judge_names_what_is_outside() -> None:
    dp = load_params().calibrate.domain
    healthy = [{"grey_white_contrast": 0.5 + 0.01 * i, "reconstruction_error": 0.04 + 0.001 * i}
               for i in range(-3, 4)]
    ranges = domain.fit_ranges(healthy, dp)
    assert ranges["grey_white_contrast"][1] is None and ranges["reconstruction_error"][0] is None
    better = {"grey_white_contrast": 0.9, "reconstruction_error": 0.001}   # never out of range
    assert domain.judge(better, ranges).in_distribution
    bad = domain.judge({"grey_white_contrast": 0.0, "reconstruction_error": 0.04}, ranges)
    assert bad.outside == ["grey_white_contrast"]
    assert "grey white contrast 0.000" in bad.describe()
    assert bad.to_json()["in_distribution"] is False
    assert domain.judge(bad.values, {}).in_distribution       # uncalibrated: no verdict


def _tissues(shape: tuple[int, int, int] = (32, 32, 32)) -> tuple[np.ndarray, np.ndarray]:
    """A brain of nested tissues (reference intensities): CSF core 0.2, grey shell 0.5,
    white matter 0.9 in between, and its mask."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    r = np.sqrt(sum((g - (n - 1) / 2) ** 2 for g, n in zip(grids, shape, strict=True)))
    brain = r < 14
    image = np.select([r < 8, r < 11.5, brain], [0.2, 0.9, 0.5], 0.0).astype(np.float32)
    return image, brain


def test_grey_white_contrast_keeps_any_t1_and_refuses_a_flair_like_contrast() -> None:
    reference, brain = _tissues()
    rng = np.random.default_rng(0)
    t1 = domain.statistics(reference + rng.normal(0, 0.05, reference.shape) * brain, brain,
                           reference, None)["grey_white_contrast"]
    gamma = domain.statistics(np.where(brain, reference ** 1.4, 0.0), brain, reference,
                              None)["grey_white_contrast"]
    flair = np.select([reference == 0.2, reference == 0.9, brain], [0.1, 0.5, 0.7], 0.0)
    other = domain.statistics(flair, brain, reference, reference)
    assert 0.5 < t1 < 0.65 and 0.55 < gamma < 0.75
    assert other["grey_white_contrast"] < 0 and other["reconstruction_error"] > 0
    flat = domain.statistics(np.where(brain, 0.5, 0.0), brain, reference, None)
    assert flat["grey_white_contrast"] == 0.0


def _native() -> SiteScan:
    image, mask = phantom((30, 34, 28))
    truth = np.zeros(mask.shape, bool)
    truth[12:16, 14:18, 12:16] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return SiteScan(nib.Nifti1Image(image, affine), mask, truth)


def test_site_variants_change_the_look_and_keep_the_lesion() -> None:
    sp = load_params().evaluate.sites
    from pipeline.config.scoring_schema import SITE_VARIANTS
    from pipeline.evaluation.sites import VARIANTS

    assert set(VARIANTS) == set(SITE_VARIANTS) == set(sp.variants)
    scan = _native()
    lesion_mm3 = scan.truth.sum() * 8.0
    for name in sp.variants:
        v = make_variant(name, scan, sp)
        zooms = np.asarray(v.img.header.get_zooms()[:3], float)
        assert v.truth is not None
        assert abs(v.truth.sum() * zooms.prod() - lesion_mm3) < 0.35 * lesion_mm3, name
        if name == "resampled":
            assert np.allclose(zooms, sp.resampled_mm)
        if name == "thick_slices":
            assert np.isclose(zooms[2], sp.thick_slice_mm) and np.allclose(zooms[:2], 2.0)
        if name == "derived_mask":
            assert v.mask is None
        if name == "loose_mask":
            assert v.mask.sum() > scan.mask.sum() and np.all(v.mask[scan.mask])
        if name in ("gamma", "n4"):
            assert not np.allclose(np.asarray(v.img.dataobj), np.asarray(scan.img.dataobj))


def test_resolution_matching_smooths_only_what_is_finer_than_the_template() -> None:
    from pipeline.preprocess.resolution import match_resolution

    data = np.zeros((31, 31, 31), np.float32)
    data[15, 15, 15] = 1.0
    same, sigma = match_resolution(data, np.diag([2.0, 2.0, 2.0, 1.0]), 2.0)
    assert same is data and sigma == [0.0, 0.0, 0.0]
    out, sigma = match_resolution(data, np.diag([1.0, 1.0, 2.5, 1.0]), 2.0)
    fwhm = np.sqrt(2.0**2 - 1.0**2)                 # widened to the template's 2 mm
    assert np.allclose(sigma[:2], fwhm / 2.3548, atol=1e-3) and sigma[2] == 0.0
    profile = out[:, 15, 15] / out[:, 15, 15].sum()
    variance = float((profile * (np.arange(31) - 15) ** 2).sum())
    assert variance == pytest.approx(sigma[0] ** 2, rel=0.05)   # 1 mm voxels: sigma in voxels
    assert np.all(out[15, 15, [14, 16]] == 0)       # nothing along the coarse axis


def test_a_loose_mask_grows_by_a_voxel_at_least_on_coarse_grids() -> None:
    sp = load_params().evaluate.sites
    mask = np.zeros((20, 20, 20), bool)
    mask[5:15, 5:15, 5:15] = True
    img = nib.Nifti1Image(np.ones(mask.shape, np.float32), np.diag([2.5, 2.2, 2.4, 1.0]))
    grown = make_variant("loose_mask", SiteScan(img, mask, None), sp).mask
    assert grown.sum() == 1000 + 6 * 100 and np.all(grown[mask])


def test_the_reconstruction_error_bound_is_at_least_a_multiple_of_the_healthy_median() -> None:
    dp = load_params().calibrate.domain
    same_site = [{"grey_white_contrast": 0.5, "reconstruction_error": 0.046 + 0.0001 * i}
                 for i in range(-3, 4)]                     # one site: a very narrow spread
    high = domain.fit_ranges(same_site, dp)["reconstruction_error"][1]
    assert high == round(dp.error_ratio * 0.046, domain.DECIMALS)
    ranges = domain.fit_ranges(same_site, dp)
    other_scanner = {"grey_white_contrast": 0.51, "reconstruction_error": 0.077}
    other_modality = {"grey_white_contrast": 0.5, "reconstruction_error": 0.125}
    assert domain.judge(other_scanner, ranges).in_distribution
    assert domain.judge(other_modality, ranges).outside == ["reconstruction_error"]
