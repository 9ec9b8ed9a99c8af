"""Validation of a complete parameter tree: each field's declared rule, then the rules that
tie several keys together. Every refusal names the key(s) and what is allowed.

Example:
    >>> from pipeline.config.constraints import violations
    >>> from pipeline.config.examples import train_params
    >>> violations(train_params(epochs=0), "train.")
    ['train.epochs must be >= 1, got 0']
"""

from __future__ import annotations

import itertools

from pipeline.config.constraints import violations
from pipeline.config.kinds import KINDS, MODEL_KINDS
from pipeline.config.schema import ModelConfig, Params

Config = Params | ModelConfig  # a project's parameters, or the sections a model keeps


def downsampling(p: Config) -> int:
    """Input size / latent map size of the configured network."""
    m = p.model
    if m.architecture == "classic":
        return 2 ** sum(s == 2 for s in m.strides)
    return m.stem * 2 ** (len(m.channels) - 1)


def _network(p: Config) -> list[str]:
    m, t = p.model, p.train
    per_level = "model.strides" if m.architecture == "classic" else "model.blocks"
    levels = m.strides if m.architecture == "classic" else m.blocks
    out = []
    if len(levels) != len(m.channels):
        out.append(f"{per_level} {levels} needs one entry per entry of model.channels "
                   f"{m.channels}")
    depth = downsampling(p)
    if any(s % depth for s in p.template.crop_shape):
        out.append(f"template.crop_shape {p.template.crop_shape} must be divisible by {depth} "
                   f"(the network's downsampling)")
    if m.architecture == "classic" and t.patch_size:
        out.append("train.patch_size must be 0 (whole volumes) for model.architecture classic")
    if m.architecture == "patch" and m.latent != "spatial":
        out.append("model.latent must be spatial for model.architecture patch")
    if t.patch_size and (t.patch_size % depth or t.patch_size > min(p.template.crop_shape)):
        out.append(f"train.patch_size {t.patch_size} must be a multiple of {depth} (the "
                   f"network's downsampling) no larger than template.crop_shape")
    return out


def _scoring(p: Config) -> list[str]:
    score = p.scoring.score
    if any(n in MODEL_KINDS for n in score) and all(KINDS[n].normative for n in score):
        return []
    return [f"scoring.score combines calibrated (normative) score types, at least one of the "
            f"model's {list(MODEL_KINDS)}; got {score}"]


def _project(p: Params) -> list[str]:
    """The rules of the sections only a project has (split, cohort)."""
    out = []
    if p.split.calibration_fraction + p.split.test_fraction >= 1:
        out.append("split.calibration_fraction + split.test_fraction must be < 1 (scans must "
                   "be left for training)")
    if p.cohort.image_pattern.count("*") != 1:
        out.append(f"cohort.image_pattern must contain exactly one '*' (the subject id), got "
                   f"{p.cohort.image_pattern!r}")
    return out


def _shared(p: Config) -> list[str]:
    """The rules of the sections a model keeps too, beyond the network and the score."""
    out = []
    low, high = p.report.heat_range
    if not low < high:
        out.append(f"report.heat_range must be [low, high] with low < high, got "
                   f"{p.report.heat_range}")
    q = p.prepare.harmonise.quantiles
    if len(q) < 2 or any(b <= a for a, b in itertools.pairwise(q)):
        out.append(f"prepare.harmonise.quantiles must be at least two increasing values in "
                   f"(0, 1), got {q}")
    return out


def problems(p: Config) -> list[str]:
    """Everything wrong with ``p`` (a project's parameters or a model's sections); empty
    when it is valid. Cross-key rules are checked only once every single value is within
    its own rule."""
    single = violations(p)
    if single:
        return single
    own = _project(p) if isinstance(p, Params) else []
    return [*_network(p), *_scoring(p), *_shared(p), *own]
