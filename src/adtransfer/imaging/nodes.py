"""The nipype workflow of one scan: a small nipype interface (node) around each plain function of
adtransfer.imaging.preprocess.

    [dicom (a series folder -> NIfTI)] -> reorient (validate, RAS+) -> [register (space: native)]
        -> resample onto the 2 mm MNI grid -> normalize intensity -> crop

`preprocess_subject` runs this workflow for DICOM series and native-space scans, where the nodes' structure (a
crash file per failed node, the registration's own outputs) is worth nipype's start-up (about 0.3 s of imports
and 0.2 s to build and run four nodes, per process). An MNI-space NIfTI scan runs the same functions in the same
order directly (`preprocess.run_steps`), with the same outputs to the byte: one job per subject pays for no
nipype. Importing this module imports nipype.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits

from adtransfer.errors import InputError
from adtransfer.imaging.grid import Grid
from adtransfer.imaging.preprocess import (
    MODALITIES,
    REFERENCE_REGIONS,
    PreprocParams,
    crop_to_box,
    normalize_intensity,
    reorient,
    resample_to_mni,
)
from adtransfer.imaging.registration import RegistrationSettings
from adtransfer.imaging.templates import MNI_2MM
from adtransfer.io import load_volume

# --- nipype interfaces around the steps --------------------------------------------------------------------
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
    space = traits.Enum("mni", "native", usedefault=True, desc="the cohort's space (words the empty-brain error)")


class Normalize(SimpleInterface):
    """FDG: divide by mean uptake in the reference region; ECD: z-score within the brain."""

    input_spec = _NormalizeIn
    output_spec = _ImageOut

    def _run_interface(self, runtime):
        data = np.asarray(nib.load(self.inputs.in_file).dataobj, dtype=np.float32)
        out = normalize_intensity(data, self.inputs.modality, self.inputs.reference, self.inputs.who, self.inputs.space)
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
    normalize_node = Node(
        Normalize(modality=params.modality, reference=params.reference, space=params.space, who=who), name="normalize"
    )
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


class _DicomOut(_ImageOut):
    conversion_file = File(exists=True, desc="JSON: dcm2niix's outputs, the one used and what it is corrected for")


class DicomToNifti(SimpleInterface):
    """One DICOM series folder -> NIfTI, with dcm2niix (see adtransfer.inputs.dicom)."""

    input_spec = _DicomIn
    output_spec = _DicomOut

    def _run_interface(self, runtime):
        from adtransfer.inputs.dicom import convert_series

        out, record = convert_series(self.inputs.in_dir, os.path.abspath("series.nii"), self.inputs.who)
        self._results["out_file"] = str(out)
        self._results["conversion_file"] = os.path.abspath("conversion.json")
        Path(self._results["conversion_file"]).write_text(json.dumps(record, indent=2))
        return runtime


class _RegisterIn(_ImageIn):
    modality = traits.Enum(*MODALITIES, mandatory=True)
    settings = traits.Dict(desc="RegistrationSettings fields (config preprocess.registration)")
    order = traits.Int(1, usedefault=True, desc="spline order when the nonlinear step resamples onto the MNI grid")


class _RegisterOut(_ImageOut):
    registration_file = File(exists=True, desc="JSON: affine_scanner_to_mni, similarity, seconds")


class Register(SimpleInterface):
    """Register the scan to the modality template (rigid then affine); out_file's header maps it to MNI mm.
    With the nonlinear step, which no header can express, out_file is the scan resampled onto the MNI grid
    (`resample` then takes it as it is)."""

    input_spec = _RegisterIn
    output_spec = _RegisterOut

    def _run_interface(self, runtime):
        from adtransfer.imaging.registration import register_to_template, resample_scan_to_mni, with_registration

        img = nib.load(self.inputs.in_file)
        settings = RegistrationSettings.from_config(self.inputs.settings)
        data = np.asarray(img.dataobj, np.float32)
        result = register_to_template(data, img.affine, self.inputs.modality, settings)
        if result.displacement_mni is None:
            out = with_registration(img, result.affine_scanner_to_mni)
        else:
            on_mni = resample_scan_to_mni(
                data, img.affine, result.affine_scanner_to_mni, self.inputs.order, result.displacement_mni
            )
            out = nib.Nifti1Image(on_mni, MNI_2MM.affine)
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
    register_node = Node(
        Register(modality=params.modality, settings=settings, order=params.interpolation, who=who), name="register"
    )
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


def run_workflow(params: PreprocParams, in_file: str, who: str, work_dir: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Build and run the workflow in `work_dir`: the cropped volume, the scan on the MNI grid, and the sidecar's
    entries: `registration`, and `dicom` for a DICOM series folder (which dcm2niix output was used)."""
    outputs = _run(build_workflow(params, in_file, who, work_dir))
    data = np.asarray(nib.load(outputs["crop"].out_file).dataobj, dtype=np.float32)
    on_mni = np.asarray(nib.load(outputs["resample"].out_file).dataobj, dtype=np.float32)
    records = {"registration": registration_record(outputs, params.space)}
    if "dicom" in outputs:
        records["dicom"] = json.loads(Path(outputs["dicom"].conversion_file).read_text())
    return data, on_mni, records
