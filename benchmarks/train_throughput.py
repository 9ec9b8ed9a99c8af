"""Training throughput of the real training loop, per precision and memory format.

Runs :func:`pipeline.model.training.fit` for a few epochs on random volumes of a preset's crop
shape and model (default: the IXI preset, 80×96×80 at 2 mm), once per variant, and reports
the median volumes/s of the epochs after the first (warm-up, compilation), the peak GPU
memory and the seconds per epoch. On a CPU only the fp32 variants run.

Usage:
    python benchmarks/train_throughput.py [--preset ixi] [--volumes 32] [--epochs 4]
        [--variants fp32,bf16,bf16+channels_last,bf16+compile]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch
from common import publish

from pipeline.config.params import params_from_dict, with_preset
from pipeline.model.network import build_vae
from pipeline.model.runtime import seed_everything
from pipeline.model.training import fit


def _variant(name: str) -> dict[str, bool]:
    parts = set(name.split("+"))
    return {"amp": "bf16" in parts or "fp16" in parts, "channels_last": "channels_last" in parts,
            "compile": "compile" in parts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="ixi")
    ap.add_argument("--volumes", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=0, help="0: the preset's")
    ap.add_argument("--variants", default="fp32,bf16,bf16+channels_last,bf16+compile")
    args = ap.parse_args()
    raw = with_preset(args.preset)
    raw["train"].update({"epochs": args.epochs, "iwae_samples": 0, "early_stopping_patience": 0})
    if args.batch_size:
        raw["train"]["batch_size"] = args.batch_size
    base = params_from_dict(raw)
    shape = base.template.crop_shape
    gen = torch.Generator().manual_seed(0)
    train = torch.rand(args.volumes, 1, *shape, generator=gen)
    val = torch.rand(2, 1, *shape, generator=gen)
    gpu = torch.cuda.is_available()
    results = {}
    for name in args.variants.split(","):
        opts = _variant(name)
        if not gpu and opts["compile"]:
            continue  # torch.compile is a GPU variant here
        train_params = dataclasses.replace(base.train, amp=opts["amp"], compile=opts["compile"],
                                           channels_last=opts["channels_last"])
        params = dataclasses.replace(base, train=train_params)
        seed_everything(params.seed)
        vae = build_vae(params.model, params.template.crop_shape)
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        history = fit(vae, train, val, torch.ones_like(val, dtype=torch.bool), params).history
        rates = [s.volumes_per_s for s in history[1:]] or [history[0].volumes_per_s]
        results[name] = {
            "volumes_per_s_median": round(statistics.median(rates), 2),
            "first_epoch_s": round(history[0].seconds, 2),
            "epoch_s_median": round(statistics.median(s.seconds for s in history[1:] or
                                                      history), 2),
            "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if gpu
            else None}
    publish("train_throughput", {
        "preset": args.preset, "crop_shape": shape, "channels": base.model.channels,
        "batch_size": base.train.batch_size, "volumes": args.volumes, "epochs": args.epochs,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "variants": results})


if __name__ == "__main__":
    main()
