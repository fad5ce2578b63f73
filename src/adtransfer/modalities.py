"""The modality registry: every fact the pipeline knows about an imaging modality, in one place.

A cohort's `modality` (config, participants table, bundle manifest) names one of these. Adding a modality (HMPAO
SPECT, amyloid PET) is an entry here plus its name in the config schema's `modality` enum
(src/adtransfer/schemas/config.schema.yaml; a test checks the two agree); synthetic cohorts of it also need an
appearance model in inputs/synth.py. No TensorFlow, no pandas: every step may import this.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Modality:
    name: str  # the config value, e.g. "fdg_pet"
    label: str  # for people: model cards, figure titles
    aliases: tuple[str, ...]  # also accepted on the command line (`--modality fdg`)
    # intensity normalization in preprocessing: "reference_ratio" (divide by the mean uptake of a reference region,
    # config preprocess.fdg_reference) or "zscore" (mean 0, SD 1 inside the brain)
    normalization: str
    intensity_range: tuple[float, float]  # normalized values mapped to the network's [-1, 1] (config overrides)
    display_range: tuple[float, float]  # QC images' window on normalized values
    fc_units: int  # width of the classification head's dense layer (config train.fc_units overrides)
    # how the modality looks, for the registration template: white-matter uptake relative to grey matter, and the
    # effective resolution (FWHM, mm). The synthetic cohorts use the same figures.
    wm_ratio: float
    fwhm_mm: float


MODALITIES: dict[str, Modality] = {
    m.name: m
    for m in (
        # FDG PET: white matter about a third of grey-matter glucose uptake, ~8 mm FWHM; uptake relative to a
        # reference region. Head width: the paper's 256 units.
        Modality(
            name="fdg_pet",
            label="F-18-FDG PET",
            aliases=("fdg",),
            normalization="reference_ratio",
            intensity_range=(0.0, 3.0),
            display_range=(0.0, 2.5),
            fc_units=256,
            wm_ratio=0.35,
            fwhm_mm=8.0,
        ),
        # ECD SPECT: white matter about half of cortical perfusion, ~14 mm FWHM; counts carry no absolute unit, so
        # z-scores inside the brain. Head width: the paper's 128 units.
        Modality(
            name="ecd_spect",
            label="Tc-99m-ECD SPECT",
            aliases=("ecd",),
            normalization="zscore",
            intensity_range=(-4.0, 4.0),
            display_range=(-3.0, 3.0),
            fc_units=128,
            wm_ratio=0.55,
            fwhm_mm=14.0,
        ),
    )
}


def get(name: str) -> Modality:
    """The modality called `name` or one of its aliases (any case); ValueError naming the known ones otherwise."""
    key = name.lower()
    for m in MODALITIES.values():
        if key == m.name or key in m.aliases:
            return m
    known = ", ".join(f"{m.name} ({'/'.join(m.aliases)})" for m in MODALITIES.values())
    raise ValueError(f"unknown modality '{name}' (known: {known})")


def intensity_range(name: str, overrides: dict | None = None) -> list[float]:
    """The input mapping of a modality: config `train.intensity_range` if it names the modality, else the default."""
    return list((overrides or {}).get(name, get(name).intensity_range))


def fc_units(name: str, overrides: dict | None = None) -> int:
    """The head width of a modality: config `train.fc_units` if it names the modality, else the default."""
    return int((overrides or {}).get(name, get(name).fc_units))
