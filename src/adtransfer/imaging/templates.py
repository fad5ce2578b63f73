"""The MNI templates and the AAL3 atlas under resources/ (see resources/build_resources.py)."""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adtransfer.imaging.grid import Grid
from adtransfer.io import read_nifti

# The SPM 2 mm MNI grid every template file is on (RAS+).
MNI_2MM = Grid(shape=(91, 109, 91), voxel_mm=2.0, origin_mm=(-90.0, -126.0, -72.0))


def default_resources_dir() -> Path:
    """`$ADTRANSFER_RESOURCES`, else the repository's resources/ (the package is installed editable)."""
    env = os.environ.get("ADTRANSFER_RESOURCES")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "resources"


@dataclass(frozen=True)
class Templates:
    """The template volumes of one resources folder, each read on first use: a preprocessing job (one process per
    scan) needs the brain mask and the atlas; reading the tissue maps too cost it ~0.03 CPU s of ~0.38."""

    directory: Path
    grid: Grid = MNI_2MM

    @functools.cached_property
    def brain_mask(self) -> np.ndarray:  # bool
        return self._volume("mni152_brainmask_2mm.nii.gz") > 0

    @functools.cached_property
    def gm(self) -> np.ndarray:  # float32 probability 0..1
        return self._volume("mni152_gm_2mm.nii.gz").astype(np.float32) / 200.0

    @functools.cached_property
    def wm(self) -> np.ndarray:
        return self._volume("mni152_wm_2mm.nii.gz").astype(np.float32) / 200.0

    @functools.cached_property
    def atlas(self) -> np.ndarray:  # int16 AAL3 labels, 0 = background
        return self._volume("aal3_2mm.nii.gz").astype(np.int16)

    @functools.cached_property
    def labels(self) -> dict[int, str]:  # AAL3 index -> region name
        return _read_labels(self.directory / "aal3_labels.tsv")

    def region_mask(self, name_prefixes: list[str]) -> np.ndarray:
        """Voxels of every AAL3 region whose name starts with one of the prefixes."""
        idx = [i for i, name in self.labels.items() if name.startswith(tuple(name_prefixes))]
        return np.isin(self.atlas, idx)

    def _volume(self, name: str) -> np.ndarray:
        path = self.directory / name
        if not path.exists():
            raise FileNotFoundError(f"template file {path} is missing; run resources/build_resources.py")
        img = read_nifti(path)
        if not self.grid.matches(img.shape, img.affine):
            raise ValueError(f"{path} is not on the template grid {self.grid}")
        return np.asanyarray(img.dataobj)


@functools.lru_cache(maxsize=4)
def load_templates(resources_dir: str | os.PathLike | None = None) -> Templates:
    return Templates(Path(resources_dir) if resources_dir else default_resources_dir())


def _read_labels(path: Path) -> dict[int, str]:
    with open(path, newline="") as fh:
        return {int(row["index"]): row["name"] for row in csv.DictReader(fh, delimiter="\t")}
