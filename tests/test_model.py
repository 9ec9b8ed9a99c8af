"""The VAE's shapes, ELBO terms and gradients."""

from __future__ import annotations

import math

import torch

from pipeline.model import ConvVAE, elbo, gaussian_nll, kl_divergence


def test_shapes_and_spatial_latent() -> None:
    vae = ConvVAE([4, 8, 8], latent_channels=3)
    out = vae(torch.randn(2, 1, 24, 32, 16))
    assert out.reconstruction.shape == (2, 1, 24, 32, 16)
    assert out.mu.shape == out.logvar.shape == (2, 3, 3, 4, 2)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere() -> None:
    zero = kl_divergence(torch.zeros(5), torch.zeros(5))
    assert torch.allclose(zero, torch.zeros(5))
    assert float(kl_divergence(torch.ones(1), torch.zeros(1))) == 0.5


def test_gaussian_nll_matches_closed_form() -> None:
    x, m, s = torch.tensor([1.0]), torch.tensor([0.5]), 0.1
    expected = 0.5 * (0.5 / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi)
    assert math.isclose(float(gaussian_nll(x, m, s)), expected, rel_tol=1e-6)


def test_loss_decreases_with_training() -> None:
    torch.manual_seed(0)
    vae = ConvVAE([4, 8], latent_channels=2)
    x = torch.rand(4, 1, 16, 16, 16)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        terms = elbo(vae(x), x, sigma=0.1, beta=1.0)
        first = first if first is not None else terms.loss.item()
        opt.zero_grad()
        terms.loss.backward()
        opt.step()
    assert terms.loss.item() < first
    assert torch.isfinite(terms.negative_elbo)


def test_mean_image_starts_at_the_data_mean() -> None:
    vae = ConvVAE([4, 8], latent_channels=2, image_shape=(16, 16, 16))
    x = torch.rand(3, 1, 16, 16, 16)
    vae.init_mean_image(x)
    assert vae.mean_image is not None
    assert torch.allclose(vae.mean_image[0], x.mean(0))
    # the network's own output starts near zero, so the reconstruction starts near the mean
    decoded = vae.decode(torch.zeros(1, 2, 4, 4, 4))
    assert decoded.shape == (1, 1, 16, 16, 16)


def test_eval_mode_is_deterministic() -> None:
    vae = ConvVAE([4, 8], latent_channels=2).eval()
    x = torch.rand(1, 1, 16, 16, 16)
    assert torch.equal(vae(x).reconstruction, vae(x).reconstruction)
