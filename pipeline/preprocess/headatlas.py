"""A head atlas learned from the training scans, for brain extraction of scans with skull.

``prepare`` maps every training scan that has skull and a brain mask into template space
(with its registration) and averages them: a mean head image (skull, scalp and all, in
brain-percentile units, on a coarse grid that reaches beyond the template crop) and a brain
probability map. A scan that later arrives with skull and no mask is registered head-to-head
to the atlas (Mattes MI, centre-of-mass start) and the probability map, warped back and
thresholded, is its brain mask. The atlas travels with the model (``paths.HEAD_ATLAS_FILE``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pipeline.config.data_schema import BrainMaskParams, PrepareParams
from pipeline.preprocess import registration
from pipeline.preprocess.morphology import foreground, largest_component
from pipeline.space import geometry
from pipeline.space.template import Template

_PROBABILITY_LEVELS = 255  # the brain probability is stored as uint8 in 1/255 steps


@dataclass(frozen=True)
class Grid:
    shape: tuple[int, int, int]
    affine: np.ndarray

    def reference(self) -> sitk.Image:
        return geometry.to_sitk(np.zeros(self.shape, np.uint8), self.affine)


@dataclass(frozen=True)
class AtlasGrids:
    head: Grid    # coarse grid of the mean head image
    brain: Grid   # template-resolution grid of the brain probability


@dataclass(frozen=True)
class HeadAtlas:
    head: np.ndarray
    brain_probability: np.ndarray
    grids: AtlasGrids
    n_scans: int


def _grid(template: Template, spacing_mm: float, margin_mm: float) -> Grid:
    extent = (np.asarray(template.shape) - 1) * template.resolution_mm + 2 * margin_mm
    shape = tuple(math.ceil(float(e) / spacing_mm) + 1 for e in extent)
    affine = np.diag([spacing_mm] * 3 + [1.0])
    affine[:3, 3] = template.affine[:3, 3] - margin_mm
    return Grid((shape[0], shape[1], shape[2]), affine)


def grids(template: Template, bm: BrainMaskParams) -> AtlasGrids:
    """The atlas grids: the template crop grown by ``atlas_margin_mm`` on every side."""
    return AtlasGrids(head=_grid(template, bm.atlas_spacing_mm, bm.atlas_margin_mm),
                      brain=_grid(template, template.resolution_mm, bm.atlas_margin_mm))


def contribution(canon: np.ndarray, brain: np.ndarray, affine: np.ndarray,
                 transform: sitk.Transform, g: AtlasGrids) -> dict[str, np.ndarray]:
    """One training scan in atlas space: head image (float16) and brain mask (packed bits)."""
    lo, hi = np.percentile(canon[brain], [1, 99])
    head = geometry.to_sitk(((canon - lo) / max(hi - lo, 1e-6)).astype(np.float32), affine)
    head = registration.pyramid_level(head, g.head.affine[0, 0])
    warped = geometry.from_sitk(geometry.resample(head, g.head.reference(), transform))
    mask = geometry.from_sitk(geometry.resample(geometry.to_sitk(brain.astype(np.float32), affine),
                                                g.brain.reference(), transform)) > 0.5
    return {"head": warped.astype(np.float16), "brain": np.packbits(mask.ravel())}


def build(contributions: Iterable[dict[str, np.ndarray]], g: AtlasGrids) -> HeadAtlas | None:
    """Average contributions into an atlas (``None`` when there are none)."""
    head = np.zeros(g.head.shape, np.float64)
    brain = np.zeros(g.brain.shape, np.float64)
    n = 0
    size = int(np.prod(g.brain.shape))
    for c in contributions:
        head += c["head"].astype(np.float64)
        brain += np.unpackbits(c["brain"])[:size].reshape(g.brain.shape)
        n += 1
    if n == 0:
        return None
    return HeadAtlas(head=(head / n).astype(np.float32), brain_probability=
                     (brain / n).astype(np.float32), grids=g, n_scans=n)


def save(atlas: HeadAtlas, path: Path) -> None:
    from pipeline.io.atomic import write_arrays

    prob = np.round(atlas.brain_probability * _PROBABILITY_LEVELS).astype(np.uint8)
    write_arrays(path, {"head": atlas.head, "brain_probability": prob,
                        "head_affine": atlas.grids.head.affine,
                        "brain_affine": atlas.grids.brain.affine,
                        "n_scans": np.array([atlas.n_scans])})


def read(path: Path) -> HeadAtlas:
    from safetensors.numpy import load_file

    a = load_file(str(path))
    head, prob = a["head"], a["brain_probability"]
    g = AtlasGrids(head=Grid((head.shape[0], head.shape[1], head.shape[2]), a["head_affine"]),
                   brain=Grid((prob.shape[0], prob.shape[1], prob.shape[2]), a["brain_affine"]))
    return HeadAtlas(head=head, brain_probability=prob.astype(np.float32) / _PROBABILITY_LEVELS,
                     grids=g, n_scans=int(a["n_scans"][0]))


def register_head(canon: np.ndarray, head_mask: np.ndarray, affine: np.ndarray,
                  atlas: HeadAtlas, prepare: PrepareParams, seed: int) -> sitk.AffineTransform:
    """Affine (atlas points → scan points) aligning the scan's head with the atlas head."""
    bm = prepare.brain_mask
    fixed = geometry.to_sitk(atlas.head, atlas.grids.head.affine)
    fixed_mask = geometry.to_sitk(foreground(atlas.head).astype(np.uint8),
                                  atlas.grids.head.affine)
    moving = geometry.to_sitk(canon.astype(np.float32, copy=False), affine)
    start = registration.moments_start(fixed_mask, geometry.to_sitk(head_mask.astype(np.uint8),
                                                                    affine))
    transform = sitk.AffineTransform(3)  # translation only: heads differ in neck coverage
    transform.SetCenter(start.GetCenter())
    transform.SetTranslation(start.GetTranslation())
    registration.optimise_mi(registration.Pyramid(fixed), moving, transform, bm.atlas_levels_mm,
                             bm.atlas_iterations, prepare.registration, seed)
    return transform


def extract_brain(canon: np.ndarray, head_mask: np.ndarray, affine: np.ndarray,
                  atlas: HeadAtlas, prepare: PrepareParams, seed: int) -> np.ndarray:
    """Brain mask of a canonical scan with skull: the atlas probability warped back."""
    tx = register_head(canon, head_mask, affine, atlas, prepare, seed)
    ref = geometry.to_sitk(np.zeros(canon.shape, np.uint8), affine)
    prob = geometry.to_sitk(atlas.brain_probability, atlas.grids.brain.affine)
    warped = geometry.from_sitk(geometry.resample(prob, ref, tx.GetInverse()))
    return largest_component(warped > prepare.brain_mask.atlas_probability)
