"""The HDF5 mosaic cache: contents, provenance, and refusing inconsistent inputs without leaving files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from cohort_helpers import preprocess_table

from adtransfer.errors import InputError
from adtransfer.imaging.cache import build_cache, cache_rows, crop_grid_of, per_cache_row, read_cache
from adtransfer.imaging.grid import crop
from adtransfer.imaging.mosaic import make_mosaics
from adtransfer.imaging.preprocess import PreprocParams
from adtransfer.imaging.templates import MNI_2MM, load_templates
from adtransfer.inputs.cohort import validate_cohort

SIZE = 96  # a resized mosaic, as the models use (tile 24 px)
# float16 storage: relative rounding error <= 2^-11 ~ 4.9e-4; values here are < ~2.5
F16 = dict(rtol=1e-3, atol=1e-3)


@pytest.fixture(scope="module")
def prepared(fdg_cohort, crop_grid, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("cache_work")
    df = validate_cohort(fdg_cohort / "participants.tsv", progress=False)
    table = work / "table.tsv"
    df.drop(columns="row").to_csv(table, sep="\t", index=False)
    params = PreprocParams("fdg_pet", crop_grid)
    pre = work / "preproc"
    volumes = preprocess_table(df, params, pre)
    out = work / "fdg.h5"
    build_cache(table, pre, out, SIZE, "fdg_pet", "fdg")
    return {"df": df, "table": table, "pre": pre, "out": out, "volumes": volumes, "params": params}


@pytest.fixture(scope="module")
def cache(prepared) -> dict:
    return read_cache(prepared["out"])


def test_dataset_shapes_and_dtypes(prepared):
    n = len(prepared["df"])
    assert n == 7
    with h5py.File(prepared["out"], "r") as h5:
        assert h5["mosaics"].shape == (n, 3, SIZE, SIZE)
        assert h5["mosaics"].dtype == np.float16
        assert h5["mosaics"].chunks == (1, 3, SIZE, SIZE)
        assert h5["label"].dtype == np.int8 and h5["label"].shape == (n,)
        for col in ("mmse", "age"):
            assert h5[col].dtype == np.float32 and h5[col].shape == (n,)
        for col in ("subject_id", "diagnosis", "sex", "site", "sha256"):
            assert h5[col].shape == (n,)
            assert h5[col].dtype.kind == "O"  # variable-length strings
        assert h5["roi"].dtype == np.float32


def test_table_columns_round_trip(prepared, cache):
    df = prepared["df"]
    np.testing.assert_array_equal(cache["subject_id"], df["subject_id"].to_numpy())
    np.testing.assert_array_equal(cache["diagnosis"], df["diagnosis"].to_numpy())
    np.testing.assert_array_equal(cache["sex"], df["sex"].to_numpy())
    np.testing.assert_array_equal(cache["site"], df["site"].to_numpy())
    np.testing.assert_allclose(cache["mmse"], df["mmse"].to_numpy(float))
    np.testing.assert_allclose(cache["age"], df["age"].to_numpy(float), rtol=1e-6)
    assert cache["mosaics"].dtype == np.float32  # read_cache widens


def test_labels_match_diagnosis(cache):
    expected = {"AD": 1, "NC": 0, "MCI": -1}
    assert [expected[d] for d in cache["diagnosis"]] == cache["label"].tolist()
    assert set(cache["label"].tolist()) == {-1, 0, 1}  # the fixture has all three groups


def test_mosaics_equal_make_mosaics_of_preprocessed(prepared, cache):
    for i, sid in enumerate(cache["subject_id"]):
        vol = nib.load(prepared["pre"] / f"{sid}.nii.gz")
        np.testing.assert_array_equal(np.asarray(vol.dataobj), prepared["volumes"][sid])
        np.testing.assert_allclose(cache["mosaics"][i], make_mosaics(prepared["volumes"][sid], SIZE), **F16)
    # subjects are stored in table order, not mixed up: each mosaic is closest to its own subject's
    ids = list(cache["subject_id"])
    ref = np.stack([make_mosaics(prepared["volumes"][s], SIZE) for s in ids])
    for i in range(len(ids)):
        dist = np.abs(ref - cache["mosaics"][i]).mean(axis=(1, 2, 3))
        assert int(np.argmin(dist)) == i


def test_sha256_column_equals_table(prepared, cache):
    np.testing.assert_array_equal(cache["sha256"], prepared["df"]["sha256"].to_numpy())
    assert all(len(h) == 64 for h in cache["sha256"])


def test_attrs_provenance(prepared, cache):
    attrs = cache["attrs"]
    assert attrs["params_hash"] == prepared["params"].digest()
    for sid in cache["subject_id"]:
        side = json.loads((prepared["pre"] / f"{sid}.json").read_text())
        assert side["params_hash"] == attrs["params_hash"]
    versions = json.loads(attrs["versions"])
    assert versions["nibabel"] == nib.__version__
    assert {"numpy", "h5py", "adtransfer", "python"} <= set(versions)
    assert int(attrs["mosaic_size"]) == SIZE
    assert attrs["cohort"] == "fdg" and attrs["modality"] == "fdg_pet"
    assert list(attrs["crop_shape"]) == [95, 95, 48]
    assert list(attrs["crop_origin_mm"]) == [-94.0, -112.0, -36.0]
    assert crop_grid_of(attrs) == prepared["params"].crop_grid  # the attributes give back the grid built on


def test_roi_features(prepared, cache, crop_grid):
    roi, regions = cache["roi"], cache["regions"]
    assert roi.shape == (len(cache["subject_id"]), len(regions))
    assert len(regions) > 100
    assert len(set(regions)) == len(regions)
    assert np.isfinite(roi).all()
    # independent check: region mean = mean of the cropped volume over that AAL3 label
    t = load_templates()
    atlas = crop(t.atlas, MNI_2MM, crop_grid)
    index_of = {name: i for i, name in t.labels.items()}
    for name in ("Precuneus_L", "Hippocampus_R", regions[0], regions[-1]):
        j = regions.index(name)
        mask = atlas == index_of[name]
        for i, sid in enumerate(cache["subject_id"]):
            expected = prepared["volumes"][sid][mask].mean(dtype=np.float64)
            assert roi[i, j] == pytest.approx(expected, rel=1e-4)


def test_read_cache_without_mosaics(prepared):
    light = read_cache(prepared["out"], with_mosaics=False)
    assert "mosaics" not in light
    assert light["roi"].shape[0] == 7


def _copy_inputs(prepared, dst: Path) -> tuple[Path, Path]:
    pre = dst / "preproc"
    shutil.copytree(prepared["pre"], pre)
    table = dst / "table.tsv"
    shutil.copy(prepared["table"], table)
    return table, pre


def _leftovers(folder: Path, name: str) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(f".{name}.") or p.name == name]


def test_sha256_mismatch_raises_and_leaves_nothing(prepared, tmp_path):
    table, pre = _copy_inputs(prepared, tmp_path)
    sid = prepared["df"]["subject_id"].iat[3]
    side = pre / f"{sid}.json"
    meta = json.loads(side.read_text())
    meta["input_sha256"] = "0" * 64
    side.write_text(json.dumps(meta))
    out_dir = tmp_path / "cache"
    out = out_dir / "fdg.h5"
    with pytest.raises(InputError) as info:
        build_cache(table, pre, out, SIZE, "fdg_pet", "fdg")
    msg = str(info.value)
    assert "sha256" in msg
    assert sid in msg
    assert not out.exists()
    assert _leftovers(out_dir, "fdg.h5") == []


def test_failed_build_keeps_previous_cache(prepared, tmp_path):
    table, pre = _copy_inputs(prepared, tmp_path)
    out = tmp_path / "fdg.h5"
    out.write_bytes(b"previous cache")
    sid = prepared["df"]["subject_id"].iat[0]
    meta = json.loads((pre / f"{sid}.json").read_text())
    meta["input_sha256"] = "f" * 64
    (pre / f"{sid}.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="sha256"):
        build_cache(table, pre, out, SIZE, "fdg_pet", "fdg")
    assert out.read_bytes() == b"previous cache"
    assert [p.name for p in _leftovers(tmp_path, "fdg.h5")] == ["fdg.h5"]


def test_mixed_preprocessing_parameters_raise(prepared, tmp_path):
    table, pre = _copy_inputs(prepared, tmp_path)
    sid = prepared["df"]["subject_id"].iat[-1]
    meta = json.loads((pre / f"{sid}.json").read_text())
    meta["params_hash"] = "0123456789abcdef"
    (pre / f"{sid}.json").write_text(json.dumps(meta))
    out = tmp_path / "fdg.h5"
    with pytest.raises(InputError, match="different parameters"):
        build_cache(table, pre, out, SIZE, "fdg_pet", "fdg")
    assert _leftovers(tmp_path, "fdg.h5") == []


def test_missing_preprocessed_file_raises(prepared, tmp_path):
    table, pre = _copy_inputs(prepared, tmp_path)
    sid = prepared["df"]["subject_id"].iat[2]
    (pre / f"{sid}.nii.gz").unlink()
    out = tmp_path / "fdg.h5"
    with pytest.raises(InputError, match=f"{sid}.nii.gz"):
        build_cache(table, pre, out, SIZE, "fdg_pet", "fdg")
    assert not out.exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_damaged_preprocessed_file_is_named(prepared, tmp_path, workers):
    """A preprocessed volume cut short (a disk filled up, a copy interrupted): one message naming the file, from
    the worker processes too, and no cache."""
    table, pre = _copy_inputs(prepared, tmp_path)
    nii = pre / f"{prepared['df']['subject_id'].iat[1]}.nii.gz"
    nii.write_bytes(nii.read_bytes()[:-100])
    out = tmp_path / "fdg.h5"
    with pytest.raises(InputError) as info:
        build_cache(table, pre, out, SIZE, "fdg_pet", "fdg", workers=workers)
    assert str(nii) in str(info.value)
    assert "cannot read the preprocessed volume" in str(info.value)
    assert not out.exists()


def test_unknown_values_become_nan_and_empty(prepared, tmp_path):
    df = pd.read_csv(prepared["table"], sep="\t", dtype=str, keep_default_na=False)
    df.loc[1, "mmse"] = ""
    df.loc[2, "sex"] = ""
    df.loc[2, "site"] = ""
    table = tmp_path / "table.tsv"
    df.to_csv(table, sep="\t", index=False)
    out = tmp_path / "fdg.h5"
    build_cache(table, prepared["pre"], out, SIZE, "fdg_pet", "fdg")
    c = read_cache(out, with_mosaics=False)
    assert np.isnan(c["mmse"][1]) and np.isfinite(np.delete(c["mmse"], 1)).all()
    assert c["sex"][2] == "" and c["site"][2] == ""
    assert c["sex"][0] in ("F", "M")


def test_parallel_build_equals_serial(prepared, cache, tmp_path):
    out = tmp_path / "fdg.h5"
    build_cache(prepared["table"], prepared["pre"], out, SIZE, "fdg_pet", "fdg", workers=2)
    par = read_cache(out)
    np.testing.assert_array_equal(par["mosaics"], cache["mosaics"])
    np.testing.assert_array_equal(par["roi"], cache["roi"])
    np.testing.assert_array_equal(par["subject_id"], cache["subject_id"])


def test_regional_means_come_from_each_subjects_preprocessing(prepared, tmp_path):
    """The cache gathers the features the preprocess job computed; a sidecar without them is refused."""
    import json
    import shutil

    pre = tmp_path / "preproc"
    shutil.copytree(prepared["pre"], pre)
    sid = prepared["df"]["subject_id"].iloc[2]
    meta = json.loads((pre / f"{sid}.json").read_text())
    assert len(meta["roi_means"]) == len(read_cache(prepared["out"], with_mosaics=False)["regions"])
    del meta["roi_means"]
    (pre / f"{sid}.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=f"{sid}.json: no regional means"):
        build_cache(prepared["table"], pre, tmp_path / "c.h5", SIZE, "fdg_pet", "fdg")
    assert not (tmp_path / "c.h5").exists()


def test_cache_rows_in_the_order_asked_and_missing_subjects_named():
    ids = np.array(["s1", "NA", "s3"])
    np.testing.assert_array_equal(cache_rows(ids, ["s3", "s1"], "c.h5", "x"), [2, 0])
    assert cache_rows(ids, [], "c.h5", "x").dtype == np.int64
    with pytest.raises(InputError, match=r"c\.h5: split subjects missing from the cache: s9, s8; rebuild it"):
        cache_rows(ids, ["s1", "s9", "s8"], "c.h5", "split subjects")


def test_per_cache_row_fills_unlisted_subjects_and_refuses_unknown_ones():
    ids = np.array(["s1", "NA", "s3"])
    member = pd.Series(["test", "train"], index=["s3", "NA"])
    assert per_cache_row(member, ids, "c.h5", "x").tolist() == ["", "train", "test"]
    with pytest.raises(InputError, match="subjects of splits.tsv missing from the cache: s9"):
        per_cache_row(pd.Series(["val"], index=["s9"]), ids, "c.h5", "subjects of splits.tsv")


def test_per_cache_row_is_the_split_membership_reindexed_as_before(tiny_cache):
    """predict, baseline and occlusion got their per-subject split this way before the shared lookup."""
    from adtransfer.learning.splits import read_splits, split_membership

    ids = read_cache(tiny_cache["cache"], with_mosaics=False)["subject_id"]
    for column in ("n12", "mmse_set"):
        member = split_membership(read_splits(tiny_cache["splits"]), column)
        got = per_cache_row(member, ids, tiny_cache["cache"], "subjects")
        np.testing.assert_array_equal(got, member.reindex(ids).fillna("").to_numpy())
