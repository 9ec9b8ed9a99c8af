"""Run by tests/test_distributed.py under torchrun: a few DDP steps, then this rank's weights.

Usage: python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from pipeline.config.params import load_raw, params_from_dict
from pipeline.model import distributed
from pipeline.model.network import build_vae
from pipeline.model.runtime import seed_everything
from pipeline.model.training import fit


def main(out: Path) -> None:
    raw = load_raw()
    raw["template"] = {"resolution_mm": 6.0, "crop_shape": [16, 16, 16]}
    raw["model"].update({"channels": [4, 8], "blocks": [1, 1], "latent_channels": 2})
    raw["train"].update({"epochs": 2, "batch_size": 2, "device": "cpu", "iwae_samples": 2,
                         "patch_size": 0, "steps_per_epoch": 0})
    raw["train"]["augment"].update({"rotation_deg": 3.0, "bias_field": 0.2})
    params = params_from_dict(raw)
    world = distributed.from_env()
    distributed.init(world, torch.device("cpu"))
    seed_everything(params.seed)
    vae = build_vae(params.model, params.template.crop_shape)
    initial = {k: v.clone() for k, v in vae.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    train, val = torch.rand(8, 1, 16, 16, 16, generator=g), torch.rand(3, 1, 16, 16, 16,
                                                                         generator=g)
    result = fit(vae, train, val, torch.ones_like(val, dtype=torch.bool), params, world=world)
    changed = any(not torch.equal(initial[k], v) for k, v in vae.state_dict().items())
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()},
              str(out / f"rank{world.rank}.safetensors"))
    (out / f"rank{world.rank}.json").write_text(json.dumps({
        "world_size": world.size, "changed": changed,
        "val": [s.val_negative_elbo for s in result.history],
        "volumes": [s.volumes_per_s * s.seconds for s in result.history]}))
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
