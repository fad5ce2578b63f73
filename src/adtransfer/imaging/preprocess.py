"""Per-subject preprocessing of a scan, as a nipype workflow.

    [dicom (a series folder -> NIfTI)] -> reorient (validate, RAS+) -> [register (space: native)]
        -> resample onto the 2 mm MNI grid -> normalize intensity -> crop -> export
                                                                          \\-> QC

Each step is a small nipype interface around a plain function. `register` (adtransfer.imaging.registration) estimates
the scanner -> MNI affine and writes it into the header, so `resample` follows it like any other affine.
Intensity: FDG is divided by its mean uptake in a reference region (whole brain by default, as ADNI's
"normalized to global brain uptake"); ECD is z-scored within the brain (mean 0, SD 1), as the paper. The crop
keeps 95x95x48 voxels (see config `crop`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits

from adtransfer import __version__, modalities
from adtransfer.errors import InputError
from adtransfer.imaging.grid import Grid, crop
from adtransfer.imaging.registration import RegistrationSettings
from adtransfer.imaging.templates import MNI_2MM, load_templates
from adtransfer.io import load_volume, save_nifti, sha256_file, write_text

MODALITIES = tuple(modalities.MODALITIES)
# AAL3 name prefixes usable as FDG reference regions besides the whole brain
REFERENCE_REGIONS = {"brain": None, "cerebellum": ["Cerebellum_", "Vermis_"]}
MIN_BRAIN_COVERAGE = 0.5


@dataclass(frozen=True)
class PreprocParams:
    modality: str
    crop_grid: Grid
    reference: str = "brain"  # FDG intensity reference: brain | cerebellum
    interpolation: int = 1  # spline order for resampling (1 = trilinear)
    space: str = "mni"
    registration: RegistrationSettings = RegistrationSettings()  # space native only

    def digest(self) -> str:
        """Hash of everything that changes the output, for the cache's provenance."""
        payload = json.dumps({**asdict(self), "version": __version__}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --- the steps, as plain functions -------------------------------------------------------------------


def reorient(img: nib.Nifti1Image) -> nib.Nifti1Image:
    return nib.as_closest_canonical(img)


def resample_to_mni(img: nib.Nifti1Image, grid: Grid = MNI_2MM, order: int = 1) -> np.ndarray:
    """Data on `grid`; scans already on it (ADNI's SPM grid) are taken as they are, without interpolation."""
    if grid.matches(img.shape, img.affine):
        return np.asarray(img.dataobj, dtype=np.float32)
    from nibabel.processing import resample_from_to  # scipy.ndimage: imported only when needed

    out = resample_from_to(img, (grid.shape, grid.affine), order=order, mode="constant", cval=0.0)
    return np.asarray(out.dataobj, dtype=np.float32)


def normalize_intensity(data: np.ndarray, modality: str, reference: str = "brain", who: str = "") -> np.ndarray:
    """Statistics over the brain voxels the scan covers (see `field_of_view`)."""
    t = load_templates()
    brain = t.brain_mask
    coverage = np.count_nonzero(data[brain] > 0) / np.count_nonzero(brain)
    if coverage < MIN_BRAIN_COVERAGE:
        raise InputError(
            f"{who}: only {coverage:.0%} of the MNI brain mask has signal (empty brain); "
            "is the scan in MNI space (config `space: mni`)?"
        )
    in_view = field_of_view(data, brain)
    inside = data[brain & in_view]
    normalization = modalities.get(modality).normalization
    if normalization == "reference_ratio":
        ref = brain if REFERENCE_REGIONS[reference] is None else t.region_mask(REFERENCE_REGIONS[reference])
        if np.count_nonzero(ref & in_view) < 0.5 * np.count_nonzero(ref):
            raise InputError(
                f"{who}: the field of view misses most of the {reference} reference region; "
                "choose another reference (config preprocess.fdg_reference)"
            )
        mean = float(data[ref & in_view].mean())
        if mean <= 0:
            raise InputError(
                f"{who}: mean uptake in the {reference} reference region is {mean:g}; expected positive uptake"
            )
        return (data / mean).astype(np.float32)
    if normalization == "zscore":
        mean, sd = float(inside.mean()), float(inside.std())
        if sd <= 0:
            raise InputError(f"{who}: constant intensity inside the brain; cannot z-score")
        return ((data - mean) / sd).astype(np.float32)
    raise ValueError(f"{modality}: unknown normalization {normalization!r}")


def field_of_view(data: np.ndarray, brain: np.ndarray, max_zero_fraction: float = 0.01) -> np.ndarray:
    """Where the scan has data: everything, unless more than 1 % of the brain is exactly zero (a field of view cut
    short: no cerebellum or vertex). Then zero regions, less isolated zero voxels (clipped noise), are left out."""
    if np.count_nonzero(data[brain] == 0) <= max_zero_fraction * np.count_nonzero(brain):
        return np.ones(data.shape, bool)
    from scipy import ndimage

    return ~ndimage.binary_opening(data == 0, iterations=2)


def background_level(data: np.ndarray, margin_voxels: int = 4) -> float:
    """The normalized intensity of the scan's background: the median outside the MNI brain mask dilated by
    `margin_voxels` (scalp and skull stay out). FDG: about 0; ECD (z-scored): about -mean/SD, e.g. -5."""
    from scipy import ndimage

    outside = ~ndimage.binary_dilation(load_templates().brain_mask, iterations=margin_voxels)
    return float(np.median(data[outside])) if outside.any() else 0.0


def crop_to_box(data: np.ndarray, box: Grid) -> np.ndarray:
    """Cut the crop box out of a normalized volume on the MNI grid. Where the box reaches outside the grid
    (x: 2 voxels each side), it is padded with the scan's own background level, not 0: a z-scored ECD scan's 0 is
    the brain mean, which would draw two bright stripes on every tile."""
    return crop(data, MNI_2MM, box, fill=background_level(data))


# --- nipype interfaces around them --------------------------------------------------------------------
# (module level, so that nipype can pickle them into crash files)


class _ImageIn(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    who = traits.Str("", usedefault=True, desc="subject and table row, for error messages")


class _ImageOut(TraitedSpec):
    out_file = File(exists=True)


def _save(data: np.ndarray, affine: np.ndarray, name: str) -> str:
    path = os.path.abspath(name)
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    return path


class Reorient(SimpleInterface):
    """Load and check the scan (3D, finite, non-empty, scaling honoured), reorient to RAS+."""

    input_spec = _ImageIn
    output_spec = _ImageOut

    def _run_interface(self, runtime):
        img = reorient(load_volume(self.inputs.in_file, who=self.inputs.who))
        self._results["out_file"] = _save(np.asarray(img.dataobj), img.affine, "reoriented.nii")
        return runtime


class _ResampleIn(_ImageIn):
    order = traits.Int(1, usedefault=True)


class Resample(SimpleInterface):
    """Resample onto the 2 mm MNI grid through the affine."""

    input_spec = _ResampleIn
    output_spec = _ImageOut

    def _run_interface(self, runtime):
        data = resample_to_mni(nib.load(self.inputs.in_file), MNI_2MM, self.inputs.order)
        self._results["out_file"] = _save(data, MNI_2MM.affine, "mni.nii")
        return runtime


class _NormalizeIn(_ImageIn):
    modality = traits.Enum(*MODALITIES, mandatory=True)
    reference = traits.Enum(*REFERENCE_REGIONS, usedefault=True)


class Normalize(SimpleInterface):
    """FDG: divide by mean uptake in the reference region; ECD: z-score within the brain."""

    input_spec = _NormalizeIn
    output_spec = _ImageOut

    def _run_interface(self, runtime):
        data = np.asarray(nib.load(self.inputs.in_file).dataobj, dtype=np.float32)
        out = normalize_intensity(data, self.inputs.modality, self.inputs.reference, self.inputs.who)
        self._results["out_file"] = _save(out, MNI_2MM.affine, "normalized.nii")
        return runtime


class _CropIn(_ImageIn):
    crop_shape = traits.Tuple(traits.Int, traits.Int, traits.Int, mandatory=True)
    crop_origin_mm = traits.Tuple(traits.Float, traits.Float, traits.Float, mandatory=True)


class Crop(SimpleInterface):
    """Cut the 95x95x48 box (padding outside the MNI grid with the scan's background level)."""

    input_spec = _CropIn
    output_spec = _ImageOut

    def _run_interface(self, runtime):
        box = Grid(self.inputs.crop_shape, MNI_2MM.voxel_mm, self.inputs.crop_origin_mm)
        data = np.asarray(nib.load(self.inputs.in_file).dataobj, dtype=np.float32)
        self._results["out_file"] = _save(crop_to_box(data, box), box.affine, "cropped.nii")
        return runtime


def build_workflow(params: PreprocParams, in_file: str, who: str, base_dir: str):
    """The nipype workflow for one scan; the last node's out_file is the preprocessed volume."""
    from nipype import Node, Workflow

    wf = Workflow(name="preprocess", base_dir=base_dir)
    reorient_node = Node(Reorient(who=who), name="reorient")
    _connect_input(wf, reorient_node, in_file, who)
    resample_node = Node(Resample(order=params.interpolation, who=who), name="resample")
    normalize_node = Node(Normalize(modality=params.modality, reference=params.reference, who=who), name="normalize")
    crop_node = Node(
        Crop(crop_shape=params.crop_grid.shape, crop_origin_mm=params.crop_grid.origin_mm, who=who),
        name="crop",
    )
    wf.connect(
        [
            (_connect_registration(wf, params, reorient_node, who), resample_node, [("out_file", "in_file")]),
            (resample_node, normalize_node, [("out_file", "in_file")]),
            (normalize_node, crop_node, [("out_file", "in_file")]),
        ]
    )
    return wf


# --- native space and DICOM input: the nodes in front of `resample` --------------------------------------


class _DicomIn(BaseInterfaceInputSpec):
    in_dir = traits.Directory(exists=True, mandatory=True)
    who = traits.Str("", usedefault=True)


class DicomToNifti(SimpleInterface):
    """One DICOM series folder -> NIfTI, with dcm2niix (see adtransfer.inputs.dicom)."""

    input_spec = _DicomIn
    output_spec = _ImageOut

    def _run_interface(self, runtime):
        from adtransfer.inputs.dicom import convert_series

        out = convert_series(self.inputs.in_dir, os.path.abspath("series.nii"), self.inputs.who)
        self._results["out_file"] = str(out)
        return runtime


class _RegisterIn(_ImageIn):
    modality = traits.Enum(*MODALITIES, mandatory=True)
    settings = traits.Dict(desc="RegistrationSettings fields (config preprocess.registration)")


class _RegisterOut(_ImageOut):
    registration_file = File(exists=True, desc="JSON: affine_scanner_to_mni, similarity, seconds")


class Register(SimpleInterface):
    """Register the scan to the modality template (rigid then affine); out_file's header maps it to MNI mm."""

    input_spec = _RegisterIn
    output_spec = _RegisterOut

    def _run_interface(self, runtime):
        from adtransfer.imaging.registration import register_to_template, with_registration

        img = nib.load(self.inputs.in_file)
        settings = RegistrationSettings.from_config(self.inputs.settings)
        result = register_to_template(np.asarray(img.dataobj, np.float32), img.affine, self.inputs.modality, settings)
        out = with_registration(img, result.affine_scanner_to_mni)
        self._results["out_file"] = _save(np.asarray(out.dataobj), out.affine, "registered.nii")
        self._results["registration_file"] = os.path.abspath("registration.json")
        Path(self._results["registration_file"]).write_text(json.dumps(result.as_dict(), indent=2))
        return runtime


def _connect_input(wf, reorient_node, in_file: str, who: str) -> None:
    """Feed the scan to `reorient`: a NIfTI file directly, a DICOM series folder through dcm2niix."""
    from nipype import Node

    if os.path.isdir(in_file):
        dicom_node = Node(DicomToNifti(in_dir=os.path.abspath(in_file), who=who), name="dicom")
        wf.connect(dicom_node, "out_file", reorient_node, "in_file")
    else:
        reorient_node.inputs.in_file = os.path.abspath(in_file)


def _connect_registration(wf, params: PreprocParams, reorient_node, who: str):
    """The node whose out_file is on MNI coordinates: `reorient` itself (space mni) or a `register` node."""
    from nipype import Node

    if params.space == "mni":
        return reorient_node
    if params.space != "native":
        raise ValueError(f"unknown space {params.space!r}")
    settings = asdict(params.registration)
    register_node = Node(Register(modality=params.modality, settings=settings, who=who), name="register")
    wf.connect(reorient_node, "out_file", register_node, "in_file")
    return register_node


def registration_record(outputs: dict, space: str) -> dict:
    """The sidecar's `registration` entry."""
    if space == "mni":
        return {"space": "mni", "registered": False}
    found = json.loads(Path(outputs["register"].registration_file).read_text())
    return {"space": "native", "registered": True, **found}


def _run(wf) -> dict:
    """Run a workflow in this process; return {node name: outputs}. Re-raise our InputError as itself."""
    from nipype import config as nipype_config
    from nipype.pipeline.engine.nodes import NodeExecutionError

    nipype_config.set("execution", "crashdump_dir", wf.base_dir)
    nipype_config.set("execution", "create_report", "false")
    # the workflow copied the global config when it was built: set what its nodes read on its own copy too
    wf.config["execution"]["crashdump_dir"] = wf.base_dir
    wf.config["execution"]["remove_unnecessary_outputs"] = False  # keep outputs read after the run (registration)
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        graph = wf.run(plugin="Linear", plugin_args={"stop_on_first_crash": True})
    except NodeExecutionError as exc:
        found = re.findall(r"InputError: (.+)", str(exc))
        if found:
            raise InputError(found[-1].strip()) from None
        raise
    return {node.name: node.result.outputs for node in graph.nodes()}


def preprocess_subject(
    in_file: str | os.PathLike,
    out_file: str | os.PathLike,
    params: PreprocParams,
    subject: str = "",
    qc_png: str | os.PathLike | None = None,
    sidecar: str | os.PathLike | None = None,
    registration_png: str | os.PathLike | None = None,
) -> np.ndarray:
    """Run the workflow for one scan; write the cropped volume (and QC PNG, JSON sidecar) atomically."""
    who = f"{in_file}" + (f" (subject {subject})" if subject else "")
    with tempfile.TemporaryDirectory(prefix="adtransfer-preproc-") as work:
        outputs = _run(build_workflow(params, str(in_file), who, work))
        cropped = nib.load(outputs["crop"].out_file)
        data = np.asarray(cropped.dataobj, dtype=np.float32)
        on_mni = np.asarray(nib.load(outputs["resample"].out_file).dataobj, dtype=np.float32)
        registration = registration_record(outputs, params.space)
    img = nib.Nifti1Image(data, params.crop_grid.affine)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = f"adtransfer {params.modality} preprocessed"
    save_nifti(img, out_file)
    if qc_png:
        from adtransfer.imaging.qc_images import qc_mosaic_png

        qc_mosaic_png(data, qc_png, params.modality, title=subject or Path(in_file).name)
    if registration_png:
        from adtransfer.imaging.qc_images import registration_qc_png

        registration_qc_png(on_mni, registration_png, params.modality, subject or Path(in_file).name, registration)
    if sidecar:
        from adtransfer.imaging.roi import regional_means

        # the ROI baseline's features, computed here so that a changed scan recomputes only its own
        means, regions = regional_means(data[None], params.crop_grid)
        meta = {
            "subject_id": subject,
            "input": str(in_file),
            "input_sha256": sha256_file(in_file),
            "params": {**asdict(params), "crop_grid": asdict(params.crop_grid)},
            "params_hash": params.digest(),
            "adtransfer": __version__,
            "stats": {"min": float(data.min()), "max": float(data.max()), "mean": float(data.mean())},
            "roi_means": dict(zip(regions, means[0].astype(float).tolist(), strict=True)),
            "registration": registration,
        }
        write_text(sidecar, json.dumps(meta, indent=2, default=str) + "\n")
    return data
