"""Tables 3-4, DeLong columns, the summary sentences and the figures, from a fabricated results tree that goes
through the same evaluate -> metrics JSON -> tables path as the workflow (CNN and ROI rows alike)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from adtransfer import report
from adtransfer.catalog import grid
from adtransfer.evaluate import evaluate, read_predictions, write_json, write_predictions

SIZES = [8, 16]


def _fabricate(root, strength: dict[str, float], seed=0):
    """Predictions for every model of the grid: P(AD) = sigmoid(strength * label + noise); same subjects per cohort."""
    rng = np.random.default_rng(seed)
    subjects = {role: [f"{role}{i:03d}" for i in range(60)] for role in ("fdg", "ecd")}
    labels = {role: np.tile([1, 0], 30) for role in ("fdg", "ecd")}
    split = np.array(["test"] * 30 + ["val"] * 10 + ["train"] * 20)
    for m in grid(SIZES):
        y = labels[m.role]
        df = pd.DataFrame({"subject_id": subjects[m.role], "diagnosis": np.where(y, "AD", "NC"), "split": split})
        if m.classify:
            df["target"] = y
            s = strength.get(m.name, 1.0)
            logits = s * (2 * y[:, None] - 1) + rng.normal(0, 1.5, (60, 3))
            mos = 1 / (1 + np.exp(-logits))
            if m.kind == "roi":
                mos[:] = mos[:, :1]
        else:
            df["target"] = rng.uniform(10, 30, 60)
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


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    _fabricate(root, {"roi/ecd/nall": 2.0, "ecd/scratch": 0.2, "ecd/from_fdg_n16": 0.6})
    sentences = report.write_tables(root, SIZES, root / "tables", root / "summary.html")
    return root, sentences


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


def test_table4_has_scratch_each_size_and_the_baseline_with_delong(results):
    root, _ = results
    t4 = pd.read_csv(root / "tables" / "table4_ecd.tsv", sep="\t")
    assert t4["model"].tolist()[0].endswith("from scratch") and t4["kind"].tolist()[-1] == "roi"
    assert len(t4) == 2 + len(SIZES)
    pre = t4[t4["pretrain_size"].notna()]
    assert pre["DeLong p vs scratch"].between(0, 1).all()
    assert t4.loc[t4["kind"] == "cnn", "DeLong p vs ROI logistic"].between(0, 1).all()
    delong = pd.read_csv(root / "tables" / "delong.tsv", sep="\t")
    # FDG sizes against each other, each CNN against its baseline, ECD against scratch and baseline
    assert len(delong) == len(SIZES) * (len(SIZES) - 1) // 2 + len(SIZES) + len(SIZES) + (len(SIZES) + 1)
    assert (root / "tables" / "table4_ecd.md").read_text().count("|") > 10


def test_summary_says_plainly_which_wins(results):
    root, sentences = results
    ecd = next(s for s in sentences if s.startswith("ECD SPECT"))
    # the strong baseline is named as the winner, and the weak scratch CNN is beaten significantly
    assert ecd.split(": ", 1)[1].startswith("ROI logistic (AUC") and ("beats" in ecd or "scores higher" in ecd)
    transfer = next(s for s in sentences if s.startswith("Transfer from FDG"))
    assert "FDG 16 pre-trained (AUC" in transfer.split(": ", 1)[1].split(" beats ")[0]
    assert any(s.startswith("Transfer from FDG") for s in sentences)
    assert sum(s.startswith("MMSE") for s in sentences) == 2
    assert "Which model wins" in (root / "summary.html").read_text()


def test_mmse_table(results):
    root, _ = results
    mmse = pd.read_csv(root / "tables" / "mmse.tsv", sep="\t")
    assert len(mmse) == 4 and (mmse["test n"] == 30).all() and (mmse["train n"] == 20).all()
    metrics = json.loads((root / "metrics" / "mmse" / "fdg.json").read_text())
    assert mmse.loc[0, "test MAE"] == pytest.approx(metrics["test"]["mae"], rel=1e-3)


def test_figures_are_written(results, tmp_path):
    root, _ = results
    report.roc_curves(root, SIZES, "ecd", tmp_path / "roc.png")
    report.sample_size(root, SIZES, tmp_path / "size.png")
    report.mmse_scatter(root, SIZES, tmp_path / "mmse.png")
    report.learning_curves(root, SIZES, tmp_path / "learn.png")
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
    table = report.explanation_table(root, SIZES)
    cnn = table[table["explanation"].str.startswith("Grad-CAM")]
    roi = table[table["explanation"] == "standardized coefficients"]
    assert len(cnn) == 2 * len(SIZES) + 1 and len(roi) == len(SIZES) + 1 + 2  # + the two MMSE ridges
    assert (cnn["mass in altered regions / chance"] == 1.3).all() and roi[
        "mass in altered regions / chance"
    ].isna().all()
    assert (roi["altered among top 10 regions"] == 7).all()
    report.write_table(table, root / "tables", "explanations")
    assert "nan" not in (root / "tables" / "explanations.md").read_text()
