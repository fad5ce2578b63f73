"""Tables 3-4, DeLong columns, the summary sentences and the figures, from a fabricated results tree that goes
through the same evaluate -> metrics JSON -> tables path as the workflow (CNN and ROI rows alike)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from adtransfer import layout
from adtransfer.catalog import grid, replicate_seed
from adtransfer.errors import InputError
from adtransfer.results import report
from adtransfer.results.evaluate import evaluate, holm, read_predictions, write_json, write_predictions

SIZES = [8, 16]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


REPLICATES = 3
SPEC = {"sizes": SIZES, "replicates": REPLICATES, "init": "random", "mmse_init": "classifier"}  # as --grid


def table_files(root) -> dict:
    """Each table's TSV and Markdown file under a results root (what the workflow passes as --table)."""
    return {name: (layout.table(name, "tsv", str(root)), layout.table(name, "md", str(root))) for name in layout.TABLES}


def tables_and_page(root, figs=None, **options) -> list[str]:
    """The tables and findings (`tables`), then the summary page (`summary`) of a results root."""
    files, findings = table_files(root), layout.findings(str(root))
    sentences = report.write_tables(root, options.pop("spec", SPEC), files, findings, **options)
    report.write_summary_page({n: tsv for n, (tsv, _) in files.items()}, findings, root / "summary.html", figs)
    return sentences


# validation AUC per CNN (results/models/{m}/metrics.json): FDG 8 is best on validation (but FDG sizes are validated
# on different subjects, so that ranks nothing), FDG 16 on test; the ECD CNNs share their validation subjects
VAL_AUC = {"fdg/n8": 0.95, "fdg/n16": 0.80, "ecd/scratch": 0.90, "ecd/from_fdg_n8": 0.70, "ecd/from_fdg_n16": 0.75}


def _fabricate(root, strength: dict[str, float], seed=0):
    """Predictions for every model of the grid: P(AD) = sigmoid(strength * label + noise); same subjects per cohort."""
    rng = np.random.default_rng(seed)
    subjects = {role: [f"{role}{i:03d}" for i in range(60)] for role in ("fdg", "ecd")}
    labels = {role: np.tile([1, 0], 30) for role in ("fdg", "ecd")}
    mmse = {role: rng.uniform(10, 30, 60) for role in ("fdg", "ecd")}
    split = np.array(["test"] * 30 + ["val"] * 10 + ["train"] * 20)
    for m in grid(SIZES, REPLICATES):
        y = labels[m.role]
        df = pd.DataFrame({"subject_id": subjects[m.role], "diagnosis": np.where(y, "AD", "NC"), "split": split})
        if m.classify:
            df["target"] = y
            s = strength.get(m.first, 1.0)
            logits = s * (2 * y[:, None] - 1) + rng.normal(0, 1.5, (60, 3))
            mos = 1 / (1 + np.exp(-logits))
            if m.kind == "roi":
                mos[:] = mos[:, :1]
        else:
            df["target"] = mmse[m.role]
            mos = df["target"].to_numpy()[:, None] + rng.normal(0, 3, (60, 3))
        for i in range(3):
            df[f"mosaic_{i + 1}"] = np.nan if m.kind == "roi" else mos[:, i]
        df["ensemble"] = mos.mean(axis=1)
        write_predictions(df, root / "predictions" / f"{m.name}.tsv")
        pred = read_predictions(root / "predictions" / f"{m.name}.tsv")
        write_json(evaluate(pred, m.task, n_boot=200, seed=0), root / "metrics" / f"{m.name}.json")
        if m.kind == "cnn":
            hist = pd.DataFrame({"epoch": range(3), "loss": [1, 0.8, 0.7], "val_loss": [1.1, 0.9, 0.95]})
            key = "auc" if m.classify else "mae"
            hist[key], hist[f"val_{key}"] = [0.6, 0.7, 0.8], [0.55, 0.65, 0.7]
            (root / "models" / m.name).mkdir(parents=True, exist_ok=True)
            hist.to_csv(root / "models" / m.name / "history.tsv", sep="\t", index=False)
            val = {"val_auc_ensemble": VAL_AUC.get(m.first, 0.5)} if m.classify else {"val_mae_ensemble": 3.0}
            (root / "models" / m.name / "metrics.json").write_text(json.dumps(val))


STRENGTH = {"roi/ecd/nall": 2.0, "ecd/scratch": 0.2, "ecd/from_fdg_n16": 0.6, "fdg/n8": 0.8, "fdg/n16": 2.5}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    _fabricate(root, STRENGTH)
    res = report.Results(root, json.dumps(SPEC))
    report.roc_curves(res, root / "roc_ecd.png", 60, role="ecd")
    report.sample_size(res, root / "size.png", 60)
    figs = {"ROC curves, ECD SPECT test set": root / "roc_ecd.png", "Sample-size study": root / "size.png"}
    return root, tables_and_page(root, figs, n_boot=200)


def test_table_rows_come_from_the_one_evaluation_path(results):
    root, _ = results
    t3 = pd.read_csv(root / "tables" / "table3_fdg.tsv", sep="\t")
    assert t3["kind"].tolist() == ["cnn", "roi", "cnn", "roi"]
    for m in grid(SIZES):
        if m.role != "fdg" or not m.classify:
            continue
        pred = read_predictions(root / "predictions" / f"{m.name}.tsv")
        test = pred[pred["split"] == "test"]
        row = t3[t3["model"] == m.label].iloc[0]
        assert row["auc"] == pytest.approx(roc_auc_score(test["target"], test["ensemble"]), abs=1e-4)
        called = int(((test["ensemble"] >= 0.5) & (test["target"] == 1)).sum())
        assert row["Sensitivity (%)"].endswith(f"({called}/{int(test['target'].sum())})")


def test_table4_has_the_comparator_each_size_and_the_baseline_with_replicate_spread(results):
    root, _ = results
    t4 = pd.read_csv(root / "tables" / "table4_ecd.tsv", sep="\t")
    assert t4["model"].tolist()[0] == "Inception v3, from scratch" and t4["kind"].tolist()[-1] == "roi"
    assert len(t4) == 2 + len(SIZES)  # replicate 0 rows only
    for _, row in t4[t4["kind"] == "cnn"].iterrows():
        aucs = [
            json.loads((root / "metrics" / f"{n}.json").read_text())["auc"]["ensemble"]["auc"]
            for n in [row["name"], *(f"{row['name']}_r{r}" for r in range(1, REPLICATES))]
        ]
        assert row["auc_replicate_mean"] == pytest.approx(np.mean(aucs), abs=1e-4)
        assert row["auc_replicate_sd"] == pytest.approx(np.std(aucs, ddof=1), abs=1e-4)
        assert row["AUC over replicates, mean (SD)"].endswith(f"{REPLICATES} runs")
    assert pd.isna(t4.loc[t4["kind"] == "roi", "AUC over replicates, mean (SD)"]).all()
    assert (root / "tables" / "table4_ecd.md").read_text().count("|") > 10


def test_only_prespecified_comparisons_holm_adjusted_within_each_family(results):
    """Today's delong.tsv held every pairwise test, unadjusted. Now: the config's families (default: primary,
    baseline, sizes, mmse), raw and Holm p, paired bootstrap CIs of the differences."""
    root, _ = results
    comps = pd.read_csv(root / "tables" / "comparisons.tsv", sep="\t")
    sizes = comps.groupby("family").size().to_dict()
    assert sizes == {"primary": 1, "baseline": len(SIZES) + len(SIZES) + 1, "sizes": len(SIZES) - 1, "mmse": 2}
    primary = comps[comps["family"] == "primary"].iloc[0]
    assert (primary["name_a"], primary["name_b"]) == (f"ecd/from_fdg_n{max(SIZES)}", "ecd/scratch")
    for _, fam in comps.groupby("family"):
        np.testing.assert_allclose(fam["p_holm"], holm(fam["p"].to_numpy())[0], rtol=2e-3)  # TSV: 4 digits
    assert (comps["p_holm"] >= comps["p"] - 1e-12).all()
    assert (comps["ci_low"] <= comps["difference"]).all() and (comps["difference"] <= comps["ci_high"]).all()
    assert set(comps.loc[comps["family"] == "mmse", "measure"]) == {"MAE"}
    assert not (root / "tables" / "delong.tsv").exists()


def test_custom_families_and_pairs(results, tmp_path):
    root, _ = results
    spec = {"mine": [{"a": "ecd/from_fdg_n8", "b": "ecd/scratch"}, "transfer_largest"]}
    findings = tmp_path / "summary.md"
    report.write_tables(root, SPEC, table_files(tmp_path), findings, comparison_spec=spec, n_boot=100)
    comps = pd.read_csv(tmp_path / "tables" / "comparisons.tsv", sep="\t")
    assert comps["family"].tolist() == ["mine", "mine"] and (comps["family_size"] == 2).all()
    with pytest.raises(ValueError, match="no model 'ecd/nope'"):
        report.write_tables(
            root, SPEC, table_files(tmp_path), findings, comparison_spec={"x": [{"a": "ecd/nope", "b": "ecd/scratch"}]}
        )
    with pytest.raises(ValueError, match="no output file given for table.*mmse"):
        report.write_tables(root, SPEC, {n: f for n, f in table_files(tmp_path).items() if n != "mmse"}, findings)


def test_the_grid_is_the_workflows_mmse_init_included(results):
    """--grid carries train.mmse_init: the report's grid was built without it before."""
    root, _ = results
    assert report.Results(root, SPEC).by_name["mmse/fdg"].pretrained == f"fdg/n{max(SIZES)}"
    assert report.Results(root, {**SPEC, "mmse_init": "init"}).by_name["mmse/fdg"].pretrained is None


def test_summary_follows_the_statistics_and_picks_on_validation(results):
    root, sentences = results
    primary = next(s for s in sentences if s.startswith("Primary comparison"))
    assert "paired bootstrap 95% CI" in primary and "Holm-adjusted p" in primary
    # the decision is the DeLong test's, Holm-adjusted within its family; the CI is shown before it as uncertainty
    assert "Decided by the DeLong test, Holm-adjusted within family 'primary' (1 test): p = " in primary
    assert re.search(r": (not )?significant at 0\.05: ", primary)
    assert primary.index("paired bootstrap 95% CI") < primary.index("Decided by")
    assert not any("beats" in s or "has the lower test MAE" in s for s in sentences)
    for s in sentences:
        if " vs " in s and ("AUC" in s or "MAE" in s) and not s.startswith("Transfer effect"):
            assert "Holm" in s and "CI" in s, s
            assert "DeLong" in s or "Wilcoxon" in s, s  # the deciding test is named
    mmse = [s for s in sentences if s.startswith("MMSE:")]
    assert len(mmse) == 2 and all("Decided by the Wilcoxon signed-rank test, Holm-adjusted" in s for s in mmse)
    for s in sentences:
        if s.startswith("Family '"):
            assert "decided by the DeLong test with Holm adjustment within the family" in s, s


def test_a_cnn_is_chosen_on_validation_only_among_cnns_validated_on_the_same_subjects(results):
    """FDG 8 has the best validation AUC, but FDG 8 and FDG 16 were validated on different subjects (columns n8 and
    n16, each its own train/validation split): no FDG CNN may be called chosen on validation, and the FDG sentence
    reports the largest size, fixed in advance. The ECD CNNs share one validation set (nall): there the choice
    stands (the comparator, validation AUC 0.90)."""
    _, sentences = results
    assert not any(s.startswith("FDG PET, the CNN chosen on validation") for s in sentences)
    fdg = next(s for s in sentences if s.startswith("FDG PET:"))
    assert "no CNN is chosen on validation" in fdg and "validated on different subjects" in fdg
    assert "n8, n16" in fdg and "(Inception v3, FDG 16)" in fdg and "FDG 8" not in fdg
    assert "Inception v3, FDG 16 vs ROI logistic, FDG 16" in fdg and "Decided by the DeLong test" in fdg
    ecd = next(s for s in sentences if s.startswith("ECD SPECT, the CNN chosen on validation AUC"))
    assert "(Inception v3, from scratch, validation AUC 0.900;" in ecd and "split column nall" in ecd
    assert "Inception v3, from scratch vs ROI logistic" in ecd


def _comparison(significant: bool, ci: tuple[float, float], difference: float = 0.08, measure: str = "AUC"):
    return pd.Series(
        {
            "family": "baseline",
            "family_size": 3,
            "model_a": "A",
            "model_b": "B",
            "measure": measure,
            "value_a": 0.9,
            "value_b": 0.9 - difference,
            "difference": difference,
            "ci_low": ci[0],
            "ci_high": ci[1],
            "test": "DeLong" if measure == "AUC" else "Wilcoxon signed-rank",
            "p": 0.004 if significant else 0.2,
            "p_holm": 0.012 if significant else 0.4,
            "significant_holm": significant,
            "n_test": 40,
        }
    )


@pytest.mark.parametrize(
    ("significant", "ci", "verdict", "note"),
    [
        (True, (0.02, 0.14), "significant at 0.05: A is better on this test set", None),
        (True, (-0.01, 0.15), "significant at 0.05: A is better on this test set", "the bootstrap CI still includes 0"),
        (False, (-0.03, 0.19), "not significant at 0.05: no difference shown on this test set", None),
        (False, (0.01, 0.15), "not significant at 0.05: no difference shown", "the CI does not decide"),
    ],
)
def test_the_verdict_is_the_tests_and_the_ci_is_its_uncertainty(significant, ci, verdict, note):
    """The verdict follows the Holm-adjusted DeLong p alone; when the bootstrap CI disagrees with it the sentence
    says so, so that a reader cannot take the CI for the decision (the old text did not say which decided)."""
    s = report.comparison_sentence(_comparison(significant, ci), 0.05)
    assert f"(paired bootstrap 95% CI {ci[0]:+.3f} to {ci[1]:+.3f})" in s
    p = 0.004 if significant else 0.2
    assert f"Decided by the DeLong test, Holm-adjusted within family 'baseline' (3 tests): p = {p:.2g}" in s
    assert f"Holm-adjusted p = {0.012 if significant else 0.4:.2g}: {verdict}" in s
    assert (note in s) if note else ("bootstrap CI still" not in s and "does not decide" not in s)
    # the page marks a finding significant from the test's verdict only
    page = report.summary_html([s], {}, {})
    assert ("class='sig'" in page) == significant


def test_a_significant_mae_comparison_names_the_lower_error_model():
    s = report.comparison_sentence(_comparison(True, (-1.2, -0.3), difference=-0.7, measure="MAE"), 0.05)
    assert "Decided by the Wilcoxon signed-rank test" in s and "significant at 0.05: A is better" in s


def test_transfer_effect_over_replicates(results):
    root, sentences = results
    reps = pd.read_csv(root / "tables" / "replicates.tsv", sep="\t")
    assert len(reps) == len(SIZES) * REPLICATES
    big = reps[reps["size"] == max(SIZES)]
    assert big["replicate"].tolist() == list(range(REPLICATES))
    # paired by replicate seed: fine-tuned r against the comparator r
    assert all(a.endswith(b.removeprefix("ecd/scratch")) for a, b in zip(big["name_a"], big["name_b"], strict=True))
    np.testing.assert_allclose(big["difference"], big["auc_a"] - big["auc_b"], atol=1e-5)
    effect = next(s for s in sentences if s.startswith("Transfer effect"))
    d = big["difference"]
    assert f"over {REPLICATES} replicates" in effect and f"mean ΔAUC {d.mean():+.3f}" in effect
    assert f"SD {d.std(ddof=1):.3f}" in effect and f"{int((d > 0).sum())} of {REPLICATES} replicates" in effect


def test_comparator_is_named_for_its_initialization():
    labels = {
        init: next(m.label for m in grid(SIZES, 1, init) if m.name == "ecd/scratch") for init in ("random", "imagenet")
    }
    assert labels == {"random": "Inception v3, from scratch", "imagenet": "Inception v3, ImageNet only (no FDG stage)"}


def test_replicates_are_named_and_seeded_apart():
    names = [m.name for m in grid([80, 160], [7, 8, 9])]
    assert "ecd/scratch" in names and "ecd/scratch_r2" in names and "ecd/from_fdg_n80_r1" in names
    assert "fdg/n80_r1" not in names and "mmse/fdg_r1" not in names  # FDG parents and MMSE stay single
    assert [replicate_seed(42, 3, r) for r in range(3)] == [42, 1042, 2042]
    assert [replicate_seed(42, [7, 8, 9], r) for r in range(3)] == [7, 8, 9]


def test_summary_page_is_one_self_contained_page(results):
    root, _ = results
    page = (root / "summary.html").read_text()
    assert "<style>" in page and "<meta name='viewport'" in page
    assert page.count("data:image/png;base64,") == 2
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)  # nothing fetched from a network
    for title in ("Findings", "Table 3", "Table 4", "MMSE regression", "Pre-specified comparisons"):
        assert title in page


@pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_summary_page_renders_styled_in_a_real_browser(results, tmp_path):
    """Headless Chromium screenshot at a laptop's 1366 px: the page is laid out by its own CSS (a centred column
    on a tinted background; today's page was browser-default black on white), with the figures drawn."""
    from PIL import Image

    root, _ = results
    shot = tmp_path / "summary.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1366,2000",
            f"--screenshot={shot}",
            (root / "summary.html").as_uri(),
        ],
        check=True,
        timeout=180,
        capture_output=True,
    )
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (2000, 1366)
    assert tuple(img[1000, 8]) == (244, 246, 249)  # body background beside the centred column
    assert tuple(img[1000, 683]) != (244, 246, 249)  # the column itself
    # the inline figures are drawn (coloured curve pixels, not only text grey)
    saturation = img.max(axis=2) - img.min(axis=2)
    assert (saturation > 120).sum() > 2000


def test_mmse_table_names_both_r2s_paper_first(results):
    root, _ = results
    mmse = pd.read_csv(root / "tables" / "mmse.tsv", sep="\t")
    assert len(mmse) == 4 and (mmse["test n"] == 30).all() and (mmse["train n"] == 20).all()
    metrics = json.loads((root / "metrics" / "mmse" / "fdg.json").read_text())
    assert mmse.loc[0, "test MAE"] == pytest.approx(metrics["test"]["mae"], rel=1e-3)
    cols = mmse.columns.tolist()
    paper, det = "test R² = Pearson r² (paper) (95% CI)", "test coefficient of determination (95% CI)"
    assert cols.index(paper) < cols.index(det) and "test R2" not in cols
    assert mmse.loc[0, "test pearson_r2"] == pytest.approx(metrics["test"]["pearson_r"] ** 2, rel=1e-3)
    lo, hi = metrics["test"]["pearson_r2_ci"]
    assert mmse.loc[0, paper] == f"{metrics['test']['pearson_r2']:.3f} ({lo:.3f} to {hi:.3f})"
    assert any(
        "R² as in the paper (squared Pearson r)" in s and "coefficient of determination" in s for s in results[1]
    )


def test_figures_are_written(results, tmp_path):
    root, _ = results
    res = report.Results(root, SPEC)
    report.roc_curves(res, tmp_path / "roc.png", role="ecd")
    report.sample_size(res, tmp_path / "size.png")
    report.mmse_scatter(res, tmp_path / "mmse.png")
    report.learning_curves(res, tmp_path / "learn.png")
    for name in ("roc", "size", "mmse", "learn"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_explanation_table_puts_gradcam_beside_the_baseline(results):
    root, _ = results
    for m in grid(SIZES):
        folder = root / "explain" / m.name
        folder.mkdir(parents=True, exist_ok=True)
        top = {"k": 10, "hits": 7 if m.kind == "roi" else 2, "regions": ["Precuneus_L"] * 10}
        if m.kind == "cnn" and m.classify:
            summary = {"layer": "mixed7", "map_size": [4, 4], "ground_truth": {"ratio": 1.3, "top_regions": top}}
            (folder / "gradcam_summary.json").write_text(json.dumps(summary))
        elif m.kind == "roi":
            (folder / "explain_summary.json").write_text(json.dumps({"ground_truth": top}))
    table = report.explanation_table(report.Results(root, SPEC))
    cnn = table[table["explanation"].str.startswith("Grad-CAM")]
    roi = table[table["explanation"] == "standardized coefficients"]
    assert len(cnn) == 2 * len(SIZES) + 1 and len(roi) == len(SIZES) + 1 + 2  # + the two MMSE ridges
    assert (cnn["mass in altered regions / chance"] == 1.3).all() and roi[
        "mass in altered regions / chance"
    ].isna().all()
    assert (roi["altered among top 10 regions"] == 7).all()
    report.write_table(table, *(layout.table("explanations", ext, str(root)) for ext in ("tsv", "md")))
    assert "nan" not in (root / "tables" / "explanations.md").read_text()


def test_metrics_from_an_older_version_ask_for_a_rerun(results, tmp_path):
    root, _ = results
    old = tmp_path / "old"
    shutil.copytree(root, old)
    path = old / "metrics" / "mmse" / "fdg.json"
    metrics = json.loads(path.read_text())
    metrics["test"] = {"n": 30, "r2": 0.5, "pearson_r": 0.8, "p": 0.01, "mae": 2.0}
    path.write_text(json.dumps(metrics))
    with pytest.raises(InputError, match="older adtransfer.*--forcerun evaluate"):
        tables_and_page(old, n_boot=100)


def test_summary_says_which_kind_of_synthetic_cohort_it_is(tmp_path):
    """The CNN-vs-baseline row means different things on atlas-painted and atlas-free synthetic effects."""
    import json

    from adtransfer.results.report import synthetic_sentences

    (tmp_path / "fdg.json").write_text(json.dumps({"effect_pattern": "smooth"}))
    (tmp_path / "ecd.json").write_text(json.dumps({}))  # older ground truth: painted per region
    fdg_sentence, ecd_sentence = sorted(
        synthetic_sentences({"fdg": tmp_path / "fdg.json", "ecd": tmp_path / "ecd.json"}), key=lambda s: "FDG" not in s
    )
    assert "FDG cohort is synthetic (smooth effect)" in fdg_sentence and "no built-in advantage" in fdg_sentence
    assert "ECD cohort is synthetic (regional effect)" in ecd_sentence and "favours the regional-mean" in ecd_sentence
    assert synthetic_sentences({}) == []


# --- registration QC of native-space cohorts in the findings and on the summary page -------------------------


def _registration_qc_table(tmp_path, similarities: dict[str, float], min_similarity: float, on_fail: str):
    """A registration QC table as the workflow writes it (`adtransfer registration-qc`), from fake sidecars."""
    from adtransfer.cli import main

    preproc = tmp_path / "preproc"
    preproc.mkdir()
    table = tmp_path / "cohort.tsv"
    people = {"subject_id": list(similarities), "diagnosis": "AD", "sex": "F", "site": "S1"}
    pd.DataFrame(people).to_csv(table, sep="\t", index=False)
    for sid, sim in similarities.items():
        reg = {"space": "native", "registered": True, "similarity": sim, "seconds": 1.0}
        (preproc / f"{sid}.json").write_text(json.dumps({"registration": reg}))
    out = tmp_path / "registration.tsv"
    args = ["registration-qc", "--table", str(table), "--preproc-dir", str(preproc), "--out", str(out)]
    args += ["--included", str(tmp_path / "included.tsv"), "--min-similarity", str(min_similarity)]
    main([*args, "--on-fail", on_fail])
    return out


@pytest.mark.parametrize("on_fail", ["exclude", "keep"])
def test_summary_lists_the_flagged_subjects_of_a_native_cohort_and_what_was_done(results, tmp_path, on_fail):
    """Issue 14: subjects below the similarity threshold are listed in the findings (summary.md) and on the summary
    page, with their similarity and the decision (excluded or kept), in their own section; never silently used."""
    root, _ = results
    sims = {"ecd001": 0.91, "NA": 0.42, "ecd003": 0.88, "ecd004": 0.55}  # "NA" is an id, not a missing value
    qc = _registration_qc_table(tmp_path, sims, 0.6, on_fail)
    files, findings = table_files(tmp_path), tmp_path / "tables" / "summary.md"
    sentences = report.write_tables(root, SPEC, files, findings, n_boot=100, registration_qc={"ecd": qc})
    report.write_summary_page({n: tsv for n, (tsv, _) in files.items()}, findings, tmp_path / "summary.html")

    text = findings.read_text()
    head, section = text.split(f"\n## {report.REGISTRATION_HEADING}\n\n")
    assert "registered" not in head  # the statistical findings come first, untouched
    (line,) = section.splitlines()
    assert line == f"- {sentences[-1]}"
    assert "Cohort ecd (native space): 4 subjects registered" in line
    assert "2 flagged below preprocess.registration.min_similarity = 0.6" in line
    assert line.endswith("Flagged: NA (0.420), ecd004 (0.550).")  # every flagged subject, lowest first
    assert "ecd001" not in line and "ecd003" not in line
    if on_fail == "exclude":
        assert "excluded (preprocess.registration.on_fail: exclude)" in line and "2 of 4 subjects used" in line
    else:
        assert "kept (preprocess.registration.on_fail: keep): used in every result" in line

    page = (tmp_path / "summary.html").read_text()
    findings_list = page.split("<ol class='findings'>", 1)[1].split("</ol>", 1)[0]
    assert "registered" not in findings_list  # its own section, not a finding
    qc_section = page.split(f"<h2>{report.REGISTRATION_HEADING}</h2><ul class='qc'>", 1)[1].split("</ul>", 1)[0]
    assert "<li class='flag'>" in qc_section and "NA (0.420), ecd004 (0.550)" in qc_section


def test_a_native_cohort_without_flagged_subjects_says_so(tmp_path):
    qc = _registration_qc_table(tmp_path, {"s1": 0.9, "s2": 0.8, "s3": 0.7}, 0.6, "exclude")
    (sentence,) = report.registration_sentences({"spect": qc})
    assert sentence == (
        "Cohort spect (native space): 3 subjects registered to the modality template, similarity 0.700 to 0.900 "
        "(median 0.800); none below preprocess.registration.min_similarity = 0.6: all 3 used."
    )
    page = report.summary_html([], {}, {}, sections={report.REGISTRATION_HEADING: [sentence]})
    assert "<li class='ns'>Cohort spect" in page and "class='flag'" not in page


def test_mni_space_grids_have_no_registration_section(results):
    """The shared fixture's grid passes no QC table (both cohorts in MNI space): the findings are the list alone."""
    root, _ = results
    text = (root / "tables" / "summary.md").read_text()
    assert "##" not in text and all(line.startswith("- ") for line in text.splitlines())
    assert "Registration QC" not in (root / "summary.html").read_text()
    assert report.registration_sentences(None) == [] and report.findings_markdown(["a"], {"T": []}) == "- a\n"
