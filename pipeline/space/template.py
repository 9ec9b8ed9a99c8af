"""The template space: nilearn's MNI152 (ICBM 2009 sym.) T1 and brain mask, on a fixed crop.

The crop is ``crop_shape`` voxels at ``resolution_mm``, centred on the template brain's bounding
box, so every prepared scan has the same grid and the network's input size never changes.

There is no process-wide template: :func:`build_template` makes one from nilearn's files
(the ``prepare`` and ``train`` stages, once each), a model folder stores it
(:func:`save_template`) and a loaded model carries its verified copy; whoever needs the
template is handed it.

Example:
    >>> tpl = build_template(6.0, (32, 32, 32))
    >>> tpl.image.shape, tpl.brain.dtype, tpl.space == template_space(6.0)
    ((32, 32, 32), dtype('bool'), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEMPLATE_NAME = "MNI152 (ICBM 2009c nonlinear symmetric, nilearn)"
ANTIALIAS_SIGMA_PER_MM = 0.5  # Gaussian sigma (mm) per mm of target spacing


@dataclass(frozen=True)
class Template:
    """Template T1 (zero outside the brain) and brain mask on the crop grid."""

    image: np.ndarray
    brain: np.ndarray
    affine: np.ndarray
    resolution_mm: float

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.image.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def space(self) -> str:
        return template_space(self.resolution_mm)


def template_space(resolution_mm: float) -> str:
    """The name of the template space at ``resolution_mm`` (what models state they use)."""
    return f"{TEMPLATE_NAME}, {resolution_mm:g} mm"


def crop_affine(source_affine: np.ndarray, mask: np.ndarray, resolution_mm: float,
                crop_shape: tuple[int, int, int]) -> np.ndarray:
    """Affine of a RAS grid of ``crop_shape`` voxels centred on the mask's bounding box."""
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    corners = np.array([[*lo, 1.0], [*hi, 1.0]]) @ source_affine.T
    centre = corners[:, :3].mean(axis=0)
    extent = (np.asarray(crop_shape) - 1) * resolution_mm
    affine = np.diag([resolution_mm] * 3 + [1.0])
    affine[:3, 3] = centre - extent / 2.0
    return affine


TEMPLATE_FILE = "template.safetensors"


def build_template(resolution_mm: float, crop_shape: Sequence[int]) -> Template:
    """The template on the crop grid, built from nilearn's MNI152 files (seconds: build it
    once and hand it on)."""
    shape = (int(crop_shape[0]), int(crop_shape[1]), int(crop_shape[2]))
    return _build(float(resolution_mm), shape)


def save_template(tpl: Template, path: Path) -> None:
    """Store the template with a model, so scoring never needs to rebuild it."""
    from pipeline.io.atomic import write_arrays

    write_arrays(path, {"image": tpl.image.astype(np.float32), "brain": tpl.brain.astype(np.uint8),
                        "affine": tpl.affine.astype(np.float64),
                        "resolution_mm": np.array([tpl.resolution_mm])})


def read_template(path: Path) -> Template:
    """Read a stored template (its checksum is the caller's to verify)."""
    from safetensors.numpy import load_file

    a = load_file(str(path))
    tpl = Template(image=a["image"], brain=a["brain"] > 0, affine=a["affine"],
                   resolution_mm=float(a["resolution_mm"][0]))
    return tpl


def _build(resolution_mm: float, crop_shape: tuple[int, int, int]) -> Template:
    from nilearn import datasets

    from pipeline.space import geometry

    t1 = datasets.load_mni152_template(resolution=1)
    mask = datasets.load_mni152_brain_mask(resolution=1)
    t1_data = np.asarray(t1.get_fdata(), dtype=np.float32)
    mask_data = np.asarray(mask.get_fdata(), dtype=np.float32)
    affine = crop_affine(np.asarray(mask.affine), mask_data > 0.5, resolution_mm, crop_shape)

    import SimpleITK as sitk

    ref = geometry.to_sitk(np.zeros(crop_shape, np.float32), affine)
    ident = sitk.Transform(3, sitk.sitkIdentity)
    src_t1 = geometry.to_sitk(t1_data, np.asarray(t1.affine))
    src_mask = geometry.to_sitk(mask_data, np.asarray(mask.affine))
    if resolution_mm > 1.0:  # anti-alias before downsampling
        src_t1 = sitk.SmoothingRecursiveGaussian(src_t1, ANTIALIAS_SIGMA_PER_MM * resolution_mm)
    image = geometry.from_sitk(geometry.resample(src_t1, ref, ident))
    brain = geometry.from_sitk(geometry.resample(src_mask, ref, ident)) > 0.5
    image = np.ascontiguousarray(np.where(brain, image, 0.0), dtype=np.float32)
    brain = np.ascontiguousarray(brain)
    return Template(image=image, brain=brain, affine=affine, resolution_mm=resolution_mm)
