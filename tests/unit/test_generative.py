"""The VAE as a generative model: latent paths, sampling, imputation, log-likelihood, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config.kinds import PATH_MODES
from pipeline.config.output_schema import ImputeParams
from pipeline.generative import sampling as generative
from pipeline.generative.imputation import fit_intensity_map, surroundings_fill
from pipeline.generative.quality import IntensityStats, nearest_ssim, ssim, step_fractions
from pipeline.model.network import ConvVAE
from pipeline.model.objective import Likelihood


def _vae() -> ConvVAE:
    torch.manual_seed(0)
    return ConvVAE([4, 8], latent_channels=2).eval()


def test_latent_paths_end_at_the_inputs() -> None:
    a, b = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    b = b / b.norm() * a.norm()  # equal norms: slerp stays on the sphere
    for mode in PATH_MODES:
        path = generative.latent_path(a, b, 5, mode)
        assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    lin = generative.latent_path(a, b, 3, "linear")
    sph = generative.latent_path(a, b, 3, "spherical")
    assert torch.allclose(lin[1], (a + b) / 2)
    assert abs(float(sph[1].norm() / a.norm()) - 1.0) < 1e-4  # slerp keeps the norm
    assert float(lin[1].norm()) < float(a.norm())               # lerp cuts through the centre
    assert torch.allclose(generative.latent_path(a, a, 4, "spherical")[2], a, atol=1e-5)
    opposite = generative.latent_path(a, -a, 3, "spherical")  # no great circle: linear
    assert torch.isfinite(opposite).all() and torch.allclose(opposite[1], torch.zeros_like(a))
    with pytest.raises(ValueError):
        generative.latent_path(a, b, 1, "linear")
    with pytest.raises(ValueError):
        generative.latent_path(a, b, 3, "cubic")


def test_sampling_is_seeded_and_tempered() -> None:
    vae = _vae()
    shape = generative.latent_shape(vae, (16, 16, 16))
    assert shape == tuple(vae.encode(torch.zeros(1, 1, 16, 16, 16))[0].shape[1:])
    z1, z2 = (generative.sample_latents(shape, 3, 1.0, seed=5) for _ in range(2))
    assert torch.equal(z1, z2)
    assert not torch.equal(z1, generative.sample_latents(shape, 3, 1.0, seed=6))
    assert float(generative.sample_latents(shape, 2, 0.0, 1).abs().max()) == 0.0
    half = generative.sample_latents(shape, 3, 0.5, seed=5)
    assert torch.allclose(half, z1 * 0.5)
    means = generative.decode_mean(vae, z1, batch=2)
    assert means.shape == (3, 16, 16, 16)
    noisy = generative.decode_draw(vae, z1, Likelihood("gaussian", 0.1), seed=0, batch=2)
    assert abs(float((noisy - means).std()) - 0.1) < 0.01  # x ~ N(mean, 0.1^2)


def test_impute_changes_only_the_missing_region() -> None:
    vae = _vae()
    x = torch.rand(1, 1, 16, 16, 16)
    missing = torch.zeros_like(x)
    missing[..., 4:9, 5:10, 6:11] = 1
    out = generative.impute(vae, x, missing, ImputeParams(3, 0.5, 3, 20, 0.01))
    assert torch.equal(out[missing == 0], x[missing == 0])
    assert float((out - x)[missing > 0].abs().mean()) > 1e-3


def test_impute_one_full_step_is_the_reconstruction() -> None:
    vae = _vae()
    x = torch.rand(1, 1, 16, 16, 16)
    missing = torch.zeros_like(x)
    missing[..., 2:12, 3:9, 4:10] = 1
    hole = missing > 0
    with torch.no_grad():
        reconstruction = vae(x, sample=False).reconstruction
    one = generative.impute(vae, x, missing, ImputeParams(1, 1.0, 3, 20, 0.01))
    assert torch.allclose(one[hole], reconstruction[hole])
    half = generative.impute(vae, x, missing, ImputeParams(1, 0.5, 3, 20, 0.01))
    assert torch.allclose(half[hole], ((x + reconstruction) / 2)[hole])


def test_iwae_bound_tightens_with_k_on_average() -> None:
    vae, x = _vae(), torch.rand(16, 16, 16)
    lik = Likelihood("gaussian", 0.1)
    ll = {k: np.mean([generative.log_likelihood(vae, lik, x, k, seed, batch=4).nats
                      for seed in range(5)]) for k in (1, 8)}
    assert ll[8] > ll[1]
    one = generative.log_likelihood(vae, lik, x, 3, seed=0)
    assert one.voxels == 16**3
    assert one.bits_per_voxel == pytest.approx(-one.nats / (16**3 * np.log(2)))
    assert generative.log_likelihood(vae, lik, x, 3, seed=0, batch=2).nats == pytest.approx(
        one.nats, rel=1e-6)


def test_image_quality_figures() -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.random((20, 20, 20)).astype(np.float32)
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    region = np.ones(a.shape, bool)
    assert ssim(a, a, region) == pytest.approx(1.0)
    assert ssim(a, b, region) == pytest.approx(
        structural_similarity(a, b, data_range=1.0, win_size=7), abs=0.02)
    refs = np.stack([b, a * 0.0 + 0.5, a])
    assert nearest_ssim(a, refs, region, candidates=2) == (pytest.approx(1.0), 2)
    ramp = np.stack([a * t for t in (0.0, 0.25, 0.5, 1.0)])
    assert step_fractions(ramp, region) == pytest.approx([0.25, 0.25, 0.5])
    stats = IntensityStats.of(np.stack([a, b]), region)
    assert stats.mean == pytest.approx(float(np.concatenate([a, b]).mean()), rel=1e-5)


def test_surroundings_fill_and_intensity_map() -> None:
    data = np.full((12, 12, 12), 7.0, np.float32)
    data[:, :, 6:] = 3.0
    missing = np.zeros(data.shape, bool)
    missing[4:8, 4:8, 1:4] = True
    filled = surroundings_fill(data, missing)
    assert np.array_equal(filled[~missing], data[~missing])
    assert np.allclose(filled[missing], 7.0, atol=0.3)  # the hole sits in the "7" half
    norm = np.random.default_rng(1).random((10, 10, 10))
    assert fit_intensity_map(250.0 * norm + 40.0, norm, np.ones(norm.shape, bool)) == \
        pytest.approx((250.0, 40.0))

