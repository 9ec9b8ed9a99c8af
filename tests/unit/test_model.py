"""The VAE's architectures (spatial/dense latent, strides, residual units) and likelihoods."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.model.network import ConvVAE
from pipeline.model.objective import Likelihood, elbo_terms, gaussian_nll, kl_divergence


def test_shapes_and_spatial_latent() -> None:
    vae = ConvVAE([4, 8, 8], latent_channels=3)
    out = vae(torch.randn(2, 1, 24, 32, 16))
    assert out.reconstruction.shape == (2, 1, 24, 32, 16)
    assert out.mu.shape == out.logvar.shape == (2, 3, 3, 4, 2)


def test_strides_and_residual_units_set_the_latent_grid() -> None:
    vae = ConvVAE([4, 8, 8], latent_channels=2, strides=[2, 1, 2], residual_units=1,
                  norm="group")
    out = vae(torch.randn(1, 1, 16, 16, 16))
    assert out.mu.shape == (1, 2, 4, 4, 4)
    assert out.reconstruction.shape == (1, 1, 16, 16, 16)
    assert any(type(m).__name__ == "ResidualUnit" for m in vae.modules())


def test_dense_latent_is_a_vector() -> None:
    vae = ConvVAE([4, 8], latent="dense", latent_dim=6, image_shape=(16, 16, 8))
    out = vae(torch.randn(3, 1, 16, 16, 8))
    assert out.mu.shape == (3, 6)
    assert out.reconstruction.shape == (3, 1, 16, 16, 8)
    with pytest.raises(ValueError, match="image_shape"):
        ConvVAE([4, 8], latent="dense")


def test_learned_sigma_starts_at_the_configured_std() -> None:
    torch.manual_seed(0)
    vae = ConvVAE([4, 8], latent_channels=2, learned_sigma=True, init_sigma=0.2, min_sigma=0.01)
    torch.nn.init.zeros_(vae.head.weight)
    torch.nn.init.zeros_(vae.head.bias)
    out = vae(torch.rand(1, 1, 16, 16, 16))
    assert out.sigma is not None and out.sigma.shape == out.reconstruction.shape
    assert torch.allclose(out.sigma, torch.full_like(out.sigma, 0.2), atol=1e-5)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere() -> None:
    zero = kl_divergence(torch.zeros(5), torch.zeros(5))
    assert torch.allclose(zero, torch.zeros(5))
    assert float(kl_divergence(torch.ones(1), torch.zeros(1))) == 0.5


def test_likelihoods_match_their_closed_forms() -> None:
    x, m, s = torch.tensor([1.0]), torch.tensor([0.5]), 0.1
    expected = 0.5 * (0.5 / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi)
    assert math.isclose(float(gaussian_nll(x, m, s)), expected, rel_tol=1e-6)
    vae = ConvVAE([4], latent_channels=1)
    out = vae(torch.zeros(1, 1, 4, 4, 4))
    out.reconstruction = torch.full((1, 1, 4, 4, 4), 0.5)
    laplace = Likelihood("laplace", 0.1).nll(torch.ones(1, 1, 4, 4, 4), out)
    assert torch.allclose(laplace, torch.full_like(laplace, 0.5 / 0.1 + math.log(0.2)))
    with pytest.raises(ValueError, match="sigma"):
        Likelihood("gaussian_learned", 0.1).nll(torch.ones(1, 1, 4, 4, 4), out)


@pytest.mark.parametrize("likelihood", ["gaussian", "gaussian_learned", "laplace"])
def test_loss_decreases_with_training(likelihood: str) -> None:
    torch.manual_seed(0)
    vae = ConvVAE([4, 8], latent_channels=2, learned_sigma=likelihood == "gaussian_learned")
    x = torch.rand(4, 1, 16, 16, 16)
    lik = Likelihood(likelihood, 0.1)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        terms = elbo_terms(vae(x), x, lik, beta=1.0, free_bits=0.0)
        losses.append(terms.loss.item())
        opt.zero_grad()
        terms.loss.backward()
        opt.step()
    assert losses[-1] < losses[0]
    assert torch.isfinite(terms.negative_elbo)


def test_mean_image_starts_at_the_data_mean() -> None:
    vae = ConvVAE([4, 8], latent_channels=2, image_shape=(16, 16, 16), mean_image=True)
    x = torch.rand(3, 1, 16, 16, 16)
    vae.init_mean_image(x)
    assert vae.mean_image is not None
    assert torch.allclose(vae.mean_image[0], x.mean(0))
    decoded = vae.decode(torch.zeros(1, 2, 4, 4, 4))
    assert decoded.shape == (1, 1, 16, 16, 16)


def test_the_posterior_mean_is_decoded_unless_a_sample_is_asked_for() -> None:
    vae = ConvVAE([4, 8], latent_channels=2).train()
    x = torch.rand(1, 1, 16, 16, 16)
    assert torch.equal(vae(x).reconstruction, vae(x).reconstruction)
    assert torch.equal(vae(x).z, vae(x).mu)
    a, b = vae(x, sample=True), vae(x, sample=True)
    assert not torch.equal(a.z, b.z) and not torch.equal(a.z, a.mu)
