"""ELBO terms in nats: free bits, KL per channel, and the IWAE bound."""

from __future__ import annotations

import torch

from pipeline.model.network import ConvVAE, VAEOutput
from pipeline.model.objective import Likelihood, elbo_terms, iwae_log_likelihood, kl_divergence


def _out(mu: torch.Tensor, x: torch.Tensor) -> VAEOutput:
    return VAEOutput(reconstruction=x.clone(), mu=mu, logvar=torch.zeros_like(mu), z=mu)


def test_kl_per_channel_sums_to_the_kl() -> None:
    mu = torch.zeros(2, 3, 2, 2, 2)
    mu[:, 1] = 1.0  # channel 1: 0.5 nats per unit, 8 units
    terms = elbo_terms(_out(mu, torch.zeros(2, 1, 4, 4, 4)), torch.zeros(2, 1, 4, 4, 4),
                       Likelihood("gaussian", 0.1), beta=1.0, free_bits=0.0)
    assert torch.allclose(terms.kl_channels, torch.tensor([0.0, 4.0, 0.0]))
    assert float(terms.kl) == 4.0


def test_free_bits_floor_the_penalty_per_channel_but_not_the_elbo() -> None:
    mu = torch.zeros(1, 2, 2, 2, 2, requires_grad=True)
    with torch.no_grad():
        mu[:, 1] = 1.0  # channel 1 carries 0.5 nats/unit, channel 0 nothing
    x = torch.zeros(1, 1, 4, 4, 4)
    lik = Likelihood("gaussian", 0.1)
    terms = elbo_terms(_out(mu, x), x, lik, beta=1.0, free_bits=0.25)
    # penalty: channel 0 floored at 0.25 * 8 units = 2 nats, channel 1 above the floor (4)
    assert torch.isclose(terms.loss - terms.reconstruction, torch.tensor(6.0))
    assert float(terms.kl.detach()) == 4.0  # the reported KL (and -ELBO) is the true one
    terms.loss.backward()
    assert mu.grad is not None
    assert torch.all(mu.grad[:, 0] == 0)  # below the floor: no pressure towards the prior
    assert torch.all(mu.grad[:, 1] > 0)


def test_iwae_is_a_tighter_bound_than_the_elbo() -> None:
    torch.manual_seed(0)
    vae = ConvVAE([4, 8], latent_channels=2).eval()
    x = torch.rand(2, 1, 16, 16, 16)
    lik = Likelihood("gaussian", 0.3)
    k1 = iwae_log_likelihood(vae, x, lik, 1, torch.Generator().manual_seed(1))
    k64 = iwae_log_likelihood(vae, x, lik, 64, torch.Generator().manual_seed(1))
    # K = 1 is one ELBO sample: compare with its analytic-KL mean over many samples
    elbos = []
    for s in range(64):
        g = torch.Generator().manual_seed(100 + s)
        mu, logvar = vae.encode(x)
        z = mu + torch.randn(mu.shape, generator=g) * torch.exp(0.5 * logvar)
        rec = vae.decode(z)
        nll = lik.nll(x, VAEOutput(rec, mu, logvar, z)).reshape(2, -1).sum(1)
        elbos.append(-(nll + kl_divergence(mu, logvar).reshape(2, -1).sum(1)))
    elbo = torch.stack(elbos).mean(0)
    assert torch.all(k64 >= elbo.detach())
    assert torch.all(k64 >= k1 - 1e-3)
