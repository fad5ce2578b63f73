"""User paths reach the shell quoted: a study folder named with spaces, quotes, `;`, `$` and backticks works and
runs nothing it names."""

from __future__ import annotations

import pytest
from workflow_helpers import snakemake, write_config

from adtransfer.inputs.synth import CohortSpec, generate_cohort

# Every character a shell treats specially in an unquoted (or double-quoted) word.
HOSTILE = "My Study 'q' \"d\" ; $(touch PWNED_dollar) `touch PWNED_tick` $HOME & | < >"


@pytest.mark.slow
def test_hostile_study_folder_is_quoted(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    study = tmp_path / HOSTILE
    generate_cohort(CohortSpec(name="s", modality="fdg_pet", n_ad=3, n_nc=3, seed=3), study, progress=False)
    test_file = study / "test ids; $(touch PWNED_test).txt"
    test_file.write_text("s0001\ns0004\n")
    cfg = write_config(
        work / "c.yaml",
        {
            "seed": 3,
            "mosaic": {"size": 76},
            "cohorts": {
                "fdg": {"modality": "fdg_pet", "table": str(study / "participants.tsv")},
                "ecd": {"modality": "ecd_spect", "synthetic": {"n_ad": 2, "n_nc": 2}},
            },
            "splits": {
                "fdg_cohort": "fdg",
                "ecd_cohort": "ecd",
                "fdg_test_file": str(test_file),
                "ecd_test": {"AD": 1, "NC": 1},
                "pretrain_sizes": [4],
                "val_fraction": 0.5,
            },
        },
    )
    snakemake(work, cfg, "results/cache/fdg.h5", "results/splits/fdg.tsv")
    assert (work / "results" / "cache" / "fdg.h5").stat().st_size > 0
    splits = (work / "results" / "splits" / "fdg.tsv").read_text().splitlines()
    test_rows = sorted(line.split("\t")[0] for line in splits[1:] if "\ttest" in line)
    assert test_rows == ["s0001", "s0004"]
    # nothing named in the folder was executed, wherever a shell might have run it
    for where in (tmp_path, work, study):
        assert not list(where.rglob("PWNED*")), list(where.rglob("PWNED*"))
