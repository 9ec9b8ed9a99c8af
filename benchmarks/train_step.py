"""Training step of our VAE against MONAI's ``VarAutoEncoder``: same input, same precision.

For each model × variant × batch size: one optimiser step (batch fetch from the in-memory
cohort + augmentation, forward under autocast, loss, backward, Adam), timed with the device
synchronised; the median of ``--steps`` after ``--warmup``. Reported per configuration:

- ``ms_per_step``, ``volumes_per_s``;
- ``fetch_ms``: the batch fetch alone (indexing the cached cohort, host→device copy when the
  cohort is on the host, augmentation), i.e. how long a step could wait for its data;
- ``conv_gflop_per_step``: convolution FLOPs of forward + backward, counted by PyTorch's
  ``FlopCounterMode`` (all other FLOPs in ``total_gflop_per_step``);
- ``conv_tflops``: those FLOPs over the step time, and ``fraction_of_bf16_peak`` on a GPU
  whose peak is known (benchmarks/common.py);
- ``peak_gpu_mem_gb``; the process's peak host RSS is in the result's top level.

Variants: ``fp32``, ``bf16`` (autocast), ``bf16+compile+channels_last`` (``torch.compile`` and
``channels_last_3d``); any ``+``-joined subset of bf16/fp16/compile/channels_last works. Batch
sizes: a comma list, or ``max`` (1, 2, 4, … until the GPU runs out of memory; 1, 2 on a CPU).
MONAI's model gets one residual unit per stage and a dense latent of ``latent_dim``, with the
channels and strides of ``MONAI_REFERENCE`` (``--monai-shape reference``, default) or ours
(``--monai-shape ours``: our patch embedding's stride, then 2 per level).

Usage:
    python benchmarks/train_step.py [--preset ixi] [--variants fp32,bf16,bf16+compile+channels_last]
        [--batch-sizes max] [--steps 10] [--warmup 3] [--models ours,monai]
        [--monai-shape reference|ours]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from common import gpu_peak_tflops, peak_rss_mb, publish

from pipeline.config.params import params_from_dict, with_preset
from pipeline.config.schema import Params
from pipeline.model.network import build_vae
from pipeline.model.objective import Likelihood, elbo_terms

# MONAI's model as the earlier comparison configured it (the former ixi network's shape): four
# stages to a 10 x 12 x 10 map before the dense latent. Given our two-level shape instead, its
# dense layers map 32 x 20 x 24 x 20 features to the latent: 118 M parameters that dominate
# its step, which measures dense latents rather than convolutions.
MONAI_REFERENCE = ((16, 32, 64, 64), (2, 2, 2, 1))


def _params(preset: str) -> Params:
    return params_from_dict(with_preset(preset))


def _ours(params: Params) -> tuple[torch.nn.Module, Callable[[torch.nn.Module, torch.Tensor],
                                                             torch.Tensor]]:
    likelihood, tp = Likelihood.of(params.model), params.train

    def loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return elbo_terms(model(x, sample=True), x, likelihood, tp.beta, tp.free_bits).loss
    return build_vae(params.model, params.template.crop_shape), loss


def _monai_shape(params: Params, shape: str) -> tuple[list[int], list[int]]:
    """Channels and strides of MONAI's model: ``ours`` (our channels and downsampling: the
    patch network's stem is the first stride, each further level halves) or ``reference``
    (:data:`MONAI_REFERENCE`)."""
    m = params.model
    if shape == "reference":
        return list(MONAI_REFERENCE[0]), list(MONAI_REFERENCE[1])
    strides = m.strides if m.architecture == "classic" else [m.stem] + [2] * (len(m.channels) - 1)
    return list(m.channels), list(strides)


def _monai(params: Params, shape: str) -> tuple[torch.nn.Module,
                                                Callable[[torch.nn.Module, torch.Tensor],
                                                         torch.Tensor]]:
    from monai.networks.nets import VarAutoEncoder

    channels, strides = _monai_shape(params, shape)
    net = VarAutoEncoder(spatial_dims=3, in_shape=(1, *params.template.crop_shape),
                         out_channels=1, latent_size=params.model.latent_dim, channels=channels,
                         strides=strides, num_res_units=1, norm="instance")

    def loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        rec, mu, logvar, _ = model(x)
        kl = -0.5 * torch.mean(1 + logvar.float() - mu.float() ** 2 - logvar.float().exp())
        return torch.nn.functional.mse_loss(rec.float(), x) + params.train.beta * kl
    return net, loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _conv_flops(model: torch.nn.Module, loss: Any, x: torch.Tensor, amp: Any
                ) -> tuple[float, float]:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        with amp:
            value = loss(model, x)
        value.backward()
    model.zero_grad(set_to_none=True)
    per_op = counter.get_flop_counts().get("Global", {})
    conv = sum(v for k, v in per_op.items() if "convolution" in str(k))
    return conv / 1e9, counter.get_total_flops() / 1e9


def bench(make: Any, params: Params, variant: str, batch: int, device: torch.device,
          steps: int, warmup: int) -> dict[str, Any]:
    from pipeline.model.augment import augment
    from pipeline.model.runtime import autocast_to, seed_everything

    parts = set(variant.split("+"))
    dtype = (torch.bfloat16 if "bf16" in parts else torch.float16 if "fp16" in parts
             else torch.float32)
    seed_everything(0)
    model, loss = make(params)
    model = model.to(device)
    fmt = torch.channels_last_3d if "channels_last" in parts else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    cohort = torch.rand(max(8, 2 * batch), 1, *params.template.crop_shape, device=device)
    gen = torch.Generator().manual_seed(0)
    amp = autocast_to(device, dtype)
    conv_gflop, total_gflop = _conv_flops(model, loss, cohort[:batch].contiguous(
        memory_format=fmt), amp)
    runner = torch.compile(model) if "compile" in parts else model
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s, fetch_s = [], []
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        idx = torch.randint(len(cohort), (batch,), generator=gen)
        x = augment(cohort[idx.to(device)], params.train.augment, gen).contiguous(
            memory_format=fmt)
        _sync(device)
        t1 = time.perf_counter()
        with amp:
            value = loss(runner, x)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        _sync(device)
        if i >= warmup:
            step_s.append(time.perf_counter() - t0)
            fetch_s.append(t1 - t0)
    step = statistics.median(step_s)
    out: dict[str, Any] = {
        "ms_per_step": round(1000 * step, 1), "volumes_per_s": round(batch / step, 2),
        "fetch_ms": round(1000 * statistics.median(fetch_s), 2),
        "conv_gflop_per_step": round(conv_gflop, 1), "total_gflop_per_step": round(total_gflop, 1),
        "conv_tflops": round(conv_gflop / step / 1000, 3),
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)}
    if device.type == "cuda":
        peak = gpu_peak_tflops(torch.cuda.get_device_name(device))
        out["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
        out["fraction_of_bf16_peak"] = round(out["conv_tflops"] / peak, 3) if peak else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="ixi")
    ap.add_argument("--variants", default="")
    ap.add_argument("--batch-sizes", default="max")
    ap.add_argument("--models", default="ours,monai")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--monai-shape", choices=("reference", "ours"), default="reference",
                    help="MONAI's channels/strides: MONAI_REFERENCE, or ours")
    args = ap.parse_args()
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    variants = (args.variants or ("fp32,bf16,bf16+compile+channels_last" if gpu
                                  else "fp32,bf16")).split(",")
    sizes = ([2**k for k in range(12)] if gpu else [1, 2]) if args.batch_sizes == "max" else [
        int(b) for b in args.batch_sizes.split(",")]
    params = _params(args.preset)
    makers = {"ours": _ours, "monai": functools.partial(_monai, shape=args.monai_shape)}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in args.models.split(","):
        for variant in variants:
            row = results.setdefault(name, {}).setdefault(variant, {})
            for batch in sizes:
                try:
                    row[str(batch)] = bench(makers[name], params, variant, batch, device,
                                            args.steps, args.warmup)
                except torch.OutOfMemoryError:
                    row[str(batch)] = {"out_of_memory": True}
                    break
                finally:
                    if gpu:
                        torch.cuda.empty_cache()
                print(name, variant, batch, row[str(batch)], flush=True)
    ratios = {v: {b: round(r["volumes_per_s"] / results["monai"][v][b]["volumes_per_s"], 2)
                  for b, r in results["ours"][v].items() if "volumes_per_s" in r
                  and "volumes_per_s" in results["monai"][v].get(b, {})}
              for v in variants if "ours" in results and "monai" in results}
    publish("train_step", {
        "preset": args.preset, "crop_shape": params.template.crop_shape,
        "channels": params.model.channels, "stem": params.model.stem,
        "monai_channels_strides": _monai_shape(params, args.monai_shape),
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "steps": args.steps, "warmup": args.warmup, "results": results,
        "ours_over_monai_volumes_per_s": ratios, "peak_host_rss_mb": peak_rss_mb()})


if __name__ == "__main__":
    main()
