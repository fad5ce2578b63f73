"""Registration of a native-space scan to a modality template in MNI space (SimpleITK), without an MRI.

    template  FDG / ECD templates built on the fly (cached per process) from the MNI152 grey- and white-matter
              maps under resources/, with each modality's grey:white contrast and resolution.
    register  centres of mass (moments) initialise a rigid (Euler3D) registration, then a 12-dof affine one,
              both multi-resolution with a correlation metric. The metric is masked to the template's head and
              to the scan's support (its non-zero voxels), so a cropped field of view (no cerebellum or vertex,
              zero-padded or simply not acquired) does not pull the brain towards the missing part; after the
              rigid stage that region is fixed on the template (the head where the rigidly placed scan has data).
    nonlinear optional (setting `nonlinear`, off by default): a coarse cubic BSpline transform on the template
              grid (`nonlinear_mesh` cells, about 45 mm apart at 4x4x4), fitted after the affine with L-BFGS-B, the
              same metric and masks. It only bends what an affine cannot (a head shaped unlike the template); the
              scan is then resampled through affine and BSpline together (`resample_scan_to_mni`).
    result    the affine mapping scanner mm (RAS, as in the NIfTI header) to MNI mm (without any nonlinear part),
              the BSpline's displacement on the MNI grid if used, the similarity to the template (Pearson
              correlation inside the template brain, where the scan has data) and the time.

Conventions: nibabel and the NIfTI affine use RAS world coordinates; ITK uses LPS. Both are converted here, in
`_to_sitk` (image geometry) and `_transform_to_ras` (the transform, read off by mapping points, so no
assumption about ITK's centre/offset parametrisation is needed).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from adtransfer import modalities
from adtransfer.imaging.templates import MNI_2MM, load_templates

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (its own inverse)


@dataclass(frozen=True)
class RegistrationSettings:
    """How hard to try: pyramid levels (shrink factors, smoothing FWHM in mm), iterations per level, sampling.
    Config `preprocess.registration` (these defaults are its documented defaults)."""

    shrink: tuple[int, ...] = (4, 2)
    smooth_mm: tuple[float, ...] = (8.0, 4.0)
    rigid_iterations: int = 50
    affine_iterations: int = 50
    sampling: float = 0.05  # fraction of template voxels the metric samples (random, seeded)
    seed: int = 1
    nonlinear: bool = False  # a coarse BSpline step after the affine
    nonlinear_mesh: tuple[int, int, int] = (4, 4, 4)  # BSpline cells per axis over the template grid
    nonlinear_iterations: int = 30  # L-BFGS-B iterations (one level: the affine's finest)
    # a cropped field of view (less than `cropped_below` of the template brain inside the scan's non-zero voxels
    # once centred): 7-dof similarity instead of the 12-dof affine, whose zooms and shears along the cut axis the data
    # do not constrain, and `cropped_sampling` of the (smaller) metric region sampled in both stages
    cropped_below: float = 0.95
    cropped_sampling: float = 0.2

    def __post_init__(self):
        if not 0 < self.cropped_sampling <= 1 or not 0 <= self.cropped_below <= 1:
            raise ValueError(
                f"registration: cropped_sampling {self.cropped_sampling} must be in (0, 1], "
                f"cropped_below {self.cropped_below} in [0, 1]"
            )
        if len(self.shrink) != len(self.smooth_mm):
            raise ValueError(f"registration: shrink {self.shrink} and smooth_mm {self.smooth_mm} differ in length")
        if len(self.nonlinear_mesh) != 3 or min(self.nonlinear_mesh) < 1:
            raise ValueError(f"registration: nonlinear_mesh {self.nonlinear_mesh} needs 3 positive cell counts")

    @classmethod
    def from_config(cls, cfg: dict) -> RegistrationSettings:
        keys = set(cls.__dataclass_fields__)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k in keys})


@dataclass(frozen=True)
class RegistrationResult:
    affine_scanner_to_mni: np.ndarray  # 4x4, RAS mm -> MNI RAS mm
    similarity: float
    seconds: float
    metric_rigid: float
    metric_affine: float
    # nonlinear step only: per MNI 2 mm voxel, where (RAS mm, relative to the voxel) the affine should look, and
    # what the step records (mesh, metric, its largest displacement over the brain)
    displacement_mni: np.ndarray | None = None
    nonlinear: dict | None = None
    dof: int = 12  # of the linear stage after the rigid one: 12 affine, 7 similarity (a cropped field of view)
    field_of_view: dict | None = None  # brain_fraction (template brain inside the scan's data once centred), cropped

    def as_dict(self) -> dict:
        out = {
            "affine_scanner_to_mni": np.round(self.affine_scanner_to_mni, 6).tolist(),
            "similarity": round(float(self.similarity), 4),
            "similarity_measure": "Pearson correlation with the modality template inside the MNI brain mask",
            "seconds": round(float(self.seconds), 3),
            "metric_rigid": float(self.metric_rigid),
            "metric_affine": float(self.metric_affine),
            "method": "SimpleITK: moments initialisation, Euler3D rigid then "
            + ("12-dof affine" if self.dof == 12 else f"{self.dof}-dof similarity (cropped field of view)")
            + ", correlation metric",
            "dof": self.dof,
        }
        if self.field_of_view is not None:
            out["field_of_view"] = self.field_of_view
        if self.nonlinear is not None:
            out["method"] += ", then a coarse BSpline (affine_scanner_to_mni is the affine part)"
            out["nonlinear"] = self.nonlinear
        return out


@functools.lru_cache(maxsize=2)
def modality_template(modality: str) -> np.ndarray:
    """The modality's template on the 2 mm MNI grid (float32, mean 1 inside the brain); deterministic."""
    from scipy import ndimage

    # grey:white uptake and effective resolution of the modality (the registry's figures, as synthetic scans use)
    wm_ratio, fwhm = modalities.get(modality).wm_ratio, modalities.get(modality).fwhm_mm
    t = load_templates()
    tissue = (t.gm + wm_ratio * t.wm).astype(np.float32) * t.brain_mask
    tissue = ndimage.gaussian_filter(tissue, fwhm * FWHM_TO_SIGMA / MNI_2MM.voxel_mm)
    return (tissue / tissue[t.brain_mask].mean()).astype(np.float32)


@functools.lru_cache(maxsize=1)
def template_head_mask() -> np.ndarray:
    """Where the template's metric is evaluated: the brain mask dilated by 8 mm (edges carry the alignment)."""
    from scipy import ndimage

    return ndimage.binary_dilation(load_templates().brain_mask, iterations=4)


def _to_sitk(data: np.ndarray, affine: np.ndarray):
    """A SimpleITK image with the geometry of a NIfTI (RAS) affine; data indexed [i, j, k] as in nibabel."""
    import SimpleITK as sitk

    lps = LPS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, np.float32).transpose(2, 1, 0)))
    img.SetSpacing(spacing.tolist())
    img.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    return img


def _transform_to_ras(transform) -> np.ndarray:
    """ITK maps fixed (MNI, LPS) points to moving (scanner, LPS) points; return scanner RAS -> MNI RAS."""
    points = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 100.0, 0.0], [0.0, 0.0, 100.0]])
    mapped = np.array([transform.TransformPoint(p.tolist()) for p in points])
    fixed_to_moving_lps = np.eye(4)
    fixed_to_moving_lps[:3, 3] = mapped[0]
    fixed_to_moving_lps[:3, :3] = (mapped[1:] - mapped[0]).T / 100.0
    mni_to_scanner_ras = LPS @ fixed_to_moving_lps @ LPS
    return np.linalg.inv(mni_to_scanner_ras)


def _support_mask(data: np.ndarray, voxel_mm, margin_mm: float) -> np.ndarray:
    """Voxels the scanner acquired: non-zero (zero padding and cut-off slices excluded), eroded by `margin_mm` so
    that the pyramid's smoothing, which blurs the zeros into the edge of the data, does not bias the metric."""
    from scipy import ndimage

    support = data != 0
    eroded = ndimage.distance_transform_edt(support, sampling=voxel_mm) > margin_mm
    return eroded if eroded.sum() > 1000 else support


def _initial_transform(fixed, moving, moving_data: np.ndarray, moving_affine: np.ndarray):
    """Centre of mass of the scan's bright part onto the template's; scans whose mass sits at the FOV edge
    (a cropped acquisition) still get a sane start since the rigid stage searches from there."""
    import SimpleITK as sitk

    # threshold the scan at a fraction of its robust maximum, so that background and scatter do not move the centre
    hi = np.percentile(moving_data[moving_data > 0], 99.5) if np.any(moving_data > 0) else 1.0
    thresholded = np.where(moving_data > 0.25 * hi, moving_data, 0.0)
    moving_thr = _to_sitk(thresholded, moving_affine)
    return sitk.CenteredTransformInitializer(
        fixed, moving_thr, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )


def brain_fraction(support, fixed_mask, transform) -> float:
    """Fraction of the template brain inside the scan's acquired (non-zero) voxels placed by `transform`."""
    import SimpleITK as sitk

    placed = sitk.Resample(support, fixed_mask, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return float(sitk.GetArrayViewFromImage(placed).transpose(2, 1, 0)[load_templates().brain_mask].mean())


def _method(settings: RegistrationSettings, fixed_mask, moving_mask, iterations: int, sampling: float):
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsCorrelation()
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(sampling, settings.seed)
    reg.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        reg.SetMetricMovingMask(moving_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0,
        minStep=1e-3,
        numberOfIterations=iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(settings.shrink))
    reg.SetSmoothingSigmasPerLevel([s * FWHM_TO_SIGMA for s in settings.smooth_mm])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def register_to_template(
    data: np.ndarray, affine: np.ndarray, modality: str, settings: RegistrationSettings | None = None
) -> RegistrationResult:
    """Estimate the affine scanner mm -> MNI mm of a scan (data with its NIfTI affine)."""
    import SimpleITK as sitk

    settings = settings or RegistrationSettings()
    start = time.perf_counter()
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(1)  # one core per job; and the same result every run
    template = modality_template(modality)
    fixed = _to_sitk(template, MNI_2MM.affine)
    fixed_mask = sitk.Cast(_to_sitk(template_head_mask().astype(np.float32), MNI_2MM.affine), sitk.sitkUInt8)
    moving = _to_sitk(data, affine)
    support = _support_mask(data, np.linalg.norm(affine[:3, :3], axis=0), max(settings.smooth_mm))
    moving_mask = sitk.Cast(_to_sitk(support.astype(np.float32), affine), sitk.sitkUInt8)

    rigid = _initial_transform(fixed, moving, data, affine)
    # a cropped field of view, judged once the centres of mass are aligned (before the rigid stage, whose sampling
    # it sets): fewer voxels carry the alignment, so more of them are sampled
    acquired = sitk.Cast(_to_sitk((data != 0).astype(np.float32), affine), sitk.sitkUInt8)
    fraction = brain_fraction(acquired, fixed_mask, rigid)
    cropped = fraction < settings.cropped_below
    sampling = max(settings.sampling, settings.cropped_sampling) if cropped else settings.sampling
    reg = _method(settings, fixed_mask, moving_mask, settings.rigid_iterations, sampling)
    reg.SetInitialTransform(rigid, inPlace=True)
    reg.Execute(fixed, moving)
    metric_rigid = reg.GetMetricValue()

    # a cropped scan: 7-dof similarity (one zoom, set by the axes the data span); otherwise the 12-dof affine
    full = sitk.Similarity3DTransform() if cropped else sitk.AffineTransform(3)
    full.SetCenter(rigid.GetCenter())
    full.SetMatrix(rigid.GetMatrix())
    full.SetTranslation(rigid.GetTranslation())
    # from here the metric region is held fixed: the template's head where the rigidly placed scan has data. With a
    # moving mask instead, the sampled voxels change with the transform and the affine can gain by stretching
    # ill-fitting ones out of the scan's support, as at a cropped field of view's cut edge
    in_view = sitk.Resample(moving_mask, fixed_mask, rigid, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    fixed_mask = sitk.And(fixed_mask, in_view)
    reg = _method(settings, fixed_mask, None, settings.affine_iterations, sampling)
    reg.SetInitialTransform(full, inPlace=True)
    reg.Execute(fixed, moving)
    metric_affine = reg.GetMetricValue()
    field_of_view = {
        "brain_fraction": round(fraction, 3),
        "cropped": bool(cropped),
        "cropped_below": settings.cropped_below,
        "sampling": sampling,
    }

    scanner_to_mni = _transform_to_ras(full)
    displacement, nonlinear = None, None
    if settings.nonlinear:
        displacement, nonlinear = _nonlinear_step(settings, fixed, moving, fixed_mask, full)
    on_mni = resample_scan_to_mni(data, affine, scanner_to_mni, displacement=displacement)
    similarity = template_similarity(on_mni, template)
    return RegistrationResult(
        scanner_to_mni,
        similarity,
        time.perf_counter() - start,
        metric_rigid,
        metric_affine,
        displacement,
        nonlinear,
        7 if cropped else 12,
        field_of_view,
    )


def _nonlinear_step(settings: RegistrationSettings, fixed, moving, fixed_mask, affine_tx):
    """A coarse BSpline on the template grid, applied before the (fixed) affine: MNI point -> bent MNI point ->
    scanner. Fitted at the affine's finest pyramid level only (a coarse mesh needs no finer image). Returns the
    displacement on the 2 mm MNI grid (RAS mm, shape (*MNI shape, 3)) and the sidecar's record."""
    import SimpleITK as sitk

    bspline = sitk.BSplineTransformInitializer(fixed, list(settings.nonlinear_mesh), 3)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsCorrelation()
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(settings.sampling, settings.seed)
    reg.SetMetricFixedMask(fixed_mask)  # the affine stage's: the template's head within the scan's field of view
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-5,
        numberOfIterations=settings.nonlinear_iterations,
        maximumNumberOfCorrections=5,
        maximumNumberOfFunctionEvaluations=4 * settings.nonlinear_iterations,
        costFunctionConvergenceFactor=1e7,
    )
    reg.SetShrinkFactorsPerLevel([settings.shrink[-1]])
    reg.SetSmoothingSigmasPerLevel([settings.smooth_mm[-1] * FWHM_TO_SIGMA])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetMovingInitialTransform(affine_tx)
    reg.SetInitialTransform(bspline, inPlace=True)
    reg.Execute(fixed, moving)

    field = sitk.TransformToDisplacementField(
        bspline, sitk.sitkVectorFloat64, fixed.GetSize(), fixed.GetOrigin(), fixed.GetSpacing(), fixed.GetDirection()
    )
    # ITK: [k, j, i, (x, y, z) LPS] -> nibabel: [i, j, k, (x, y, z) RAS]
    displacement = sitk.GetArrayFromImage(field).transpose(2, 1, 0, 3) * np.array([-1.0, -1.0, 1.0])
    displacement = displacement.astype(np.float32)
    largest = float(np.linalg.norm(displacement[load_templates().brain_mask], axis=1).max())
    record = {
        "type": "BSpline (cubic), L-BFGS-B",
        "mesh": list(settings.nonlinear_mesh),
        "metric": float(reg.GetMetricValue()),
        "max_displacement_mm": round(largest, 3),
    }
    return displacement, record


def resample_scan_to_mni(
    data: np.ndarray,
    affine: np.ndarray,
    scanner_to_mni: np.ndarray,
    order: int = 1,
    displacement: np.ndarray | None = None,
):
    """The scan on the 2 mm MNI grid through the estimated transform (0 outside its field of view): the affine
    alone, or, with the nonlinear step's `displacement`, each MNI voxel displaced before the affine."""
    from scipy import ndimage

    vox_to_vox = np.linalg.inv(scanner_to_mni @ affine) @ MNI_2MM.affine
    data = np.asarray(data, np.float32)
    if displacement is None:
        return ndimage.affine_transform(
            data, vox_to_vox, output_shape=MNI_2MM.shape, order=order, mode="constant", cval=0.0
        )
    ijk = np.indices(MNI_2MM.shape, dtype=np.float32)
    mni_mm = np.einsum("ab,b...->a...", MNI_2MM.affine[:3, :3], ijk) + MNI_2MM.affine[:3, 3, None, None, None]
    bent = mni_mm + np.moveaxis(displacement, -1, 0)
    to_scanner_vox = np.linalg.inv(scanner_to_mni @ affine)
    coords = np.einsum("ab,b...->a...", to_scanner_vox[:3, :3], bent) + to_scanner_vox[:3, 3, None, None, None]
    return ndimage.map_coordinates(data, coords, order=order, mode="constant", cval=0.0)


def template_similarity(on_mni: np.ndarray, template: np.ndarray) -> float:
    """Pearson correlation with the template inside the MNI brain mask, where the scan has data: a cropped field of
    view's edge (data cut to zero, blurred by resampling) is left out by eroding the data's support by 6 mm."""
    from scipy import ndimage

    inside = load_templates().brain_mask & ndimage.binary_erosion(on_mni != 0, iterations=3)
    if inside.sum() < 100:
        return 0.0
    return float(np.corrcoef(on_mni[inside], template[inside])[0, 1])


def with_registration(img: nib.Nifti1Image, scanner_to_mni: np.ndarray) -> nib.Nifti1Image:
    """The same voxels with a header whose affine maps them to MNI mm (what the resampling step follows)."""
    out = nib.Nifti1Image(np.asarray(img.dataobj, np.float32), scanner_to_mni @ img.affine)
    out.header.set_xyzt_units("mm")
    return out


# --- QC over a cohort: flag subjects whose registration is poor; exclude or keep them by config -------------

ON_FAIL = ("exclude", "keep")


def registration_qc(table, preproc_dir, min_similarity: float, on_fail: str):
    """Per subject of a validated cohort table: similarity to the template (from its sidecar), flagged when below
    `min_similarity`, and the decision (included | excluded | kept despite flag). Returns (qc table, the input
    table without the excluded subjects)."""
    import json
    from pathlib import Path

    import pandas as pd

    from adtransfer.errors import InputError
    from adtransfer.inputs.cohort import read_validated

    if on_fail not in ON_FAIL:
        raise ValueError(f"on_fail must be one of {ON_FAIL}, got {on_fail!r}")
    df = read_validated(table)  # ids such as "NA" stay ids
    rows = []
    for sid in df["subject_id"]:
        sidecar = Path(preproc_dir) / f"{sid}.json"
        if not sidecar.exists():
            raise InputError(f"{sidecar}: sidecar of subject {sid} missing; rerun preprocessing")
        reg = json.loads(sidecar.read_text()).get("registration", {})
        if not reg.get("registered"):
            raise InputError(f"{sidecar}: subject {sid} was not registered (space mni); registration QC needs native")
        flagged = reg["similarity"] < min_similarity
        decision = ("excluded" if on_fail == "exclude" else "kept (flagged)") if flagged else "included"
        rows.append(
            {
                "subject_id": sid,
                "similarity": reg["similarity"],
                "min_similarity": min_similarity,
                "flagged": flagged,
                "decision": decision,
                "seconds": reg.get("seconds"),
                # what was fitted: 12 (affine) or 7 (similarity, a cropped field of view); empty in older sidecars
                "dof": reg.get("dof"),
                "cropped_fov": reg.get("field_of_view", {}).get("cropped"),
                "qc_png": f"registration/{sid}.png",
            }
        )
    qc = pd.DataFrame(rows)
    included = df[~qc["decision"].eq("excluded").to_numpy()]
    if included.empty:
        raise InputError(
            f"{table}: all {len(qc)} subjects are below the registration similarity {min_similarity:g} and excluded "
            f"(similarities {qc['similarity'].min():.3f}..{qc['similarity'].max():.3f}); check the scans' QC images "
            "in registration/ beside their sidecars, or lower preprocess.registration.min_similarity"
        )
    return qc, included
