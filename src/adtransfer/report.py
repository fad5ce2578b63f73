"""The results tree's summary: Tables 3-4 (CNNs and ROI baselines), DeLong tests, the MMSE table, the summary
page, and the figures built from predictions and metrics. Files are found by the catalog's naming convention
under one results folder. No TensorFlow.
"""

from __future__ import annotations

import html
import itertools
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from adtransfer import figures
from adtransfer.catalog import Model, grid
from adtransfer.evaluate import delong_test, read_predictions, subset
from adtransfer.io import atomic_output, write_text

PAPER_COLUMNS = [
    "Sensitivity (%)",
    "Specificity (%)",
    "Precision (%)",
    "Accuracy (%)",
    "F1 score (%)",
    "AUC for AD/NC (95% CI)",
]


class Results:
    """Predictions and metrics of the model grid under a results folder."""

    def __init__(self, root: str | os.PathLike, sizes: list[int]):
        self.root = Path(root)
        self.models = grid(sizes)

    def select(self, role: str, task: str = "classify", kind: str | None = None) -> list[Model]:
        return [m for m in self.models if m.role == role and m.task == task and (kind is None or m.kind == kind)]

    def predictions(self, m: Model) -> pd.DataFrame:
        return read_predictions(self.root / "predictions" / f"{m.name}.tsv")

    def metrics(self, m: Model) -> dict:
        return json.loads((self.root / "metrics" / f"{m.name}.json").read_text())

    def test_scores(self, m: Model) -> pd.DataFrame:
        return subset(self.predictions(m), "test", classify=True).set_index("subject_id").sort_index()


# --- tables --------------------------------------------------------------------------------------------


def paper_row(m: Model, metrics: dict) -> dict:
    """One row as the paper prints it: rates with counts, F1, AUC with its CI; numbers beside for machines."""
    at = metrics["at_threshold"]
    auc = metrics["auc"]["ensemble"]
    return {
        "model": m.label,
        "kind": m.kind,
        "pretrain_size": m.size if m.size is not None else "",
        "Sensitivity (%)": at["sensitivity"]["text"],
        "Specificity (%)": at["specificity"]["text"],
        "Precision (%)": at["precision"]["text"],
        "Accuracy (%)": at["accuracy"]["text"],
        "F1 score (%)": f"{100 * at['f1']:.1f}",
        "AUC for AD/NC (95% CI)": f"{auc['auc']:.3f} ({auc['ci_low']:.3f}-{auc['ci_high']:.3f})",
        "auc": auc["auc"],
        "auc_ci_low": auc["ci_low"],
        "auc_ci_high": auc["ci_high"],
        "threshold": at["threshold"],
        "n_test": metrics["n_test"],
    }


def delong_p(res: Results, a: Model, b: Model) -> dict:
    """DeLong test of a vs b, which must have been tested on the same subjects."""
    sa, sb = res.test_scores(a), res.test_scores(b)
    if not sa.index.equals(sb.index):
        raise ValueError(f"{a.name} and {b.name} were not tested on the same subjects")
    return delong_test(sa["target"].to_numpy(int), sa["ensemble"], sb["ensemble"])


def classification_tables(res: Results) -> dict[str, pd.DataFrame]:
    """table3_fdg (a CNN and an ROI-logistic row per pre-training size), table4_ecd (scratch, each size, ROI),
    and every DeLong comparison in one long table."""
    comparisons = []

    def compare(a: Model, b: Model, cohort: str) -> float:
        d = delong_p(res, a, b)
        comparisons.append({"cohort": cohort, "model_a": a.label, "model_b": b.label, **d})
        return d["p"]

    rows3 = []
    fdg_cnn = res.select("fdg", kind="cnn")
    for m in res.select("fdg"):
        row = paper_row(m, res.metrics(m))
        if m.kind == "cnn":
            roi = next(r for r in res.select("fdg", kind="roi") if r.size == m.size)
            row["DeLong p vs ROI logistic"] = compare(m, roi, "fdg")
        rows3.append(row)
    for a, b in itertools.combinations(fdg_cnn, 2):
        compare(b, a, "fdg")

    ecd = res.select("ecd")
    scratch = next(m for m in ecd if m.name == "ecd/scratch")
    roi = next(m for m in ecd if m.kind == "roi")
    rows4 = []
    for m in [scratch] + [m for m in ecd if m.pretrained] + [roi]:
        row = paper_row(m, res.metrics(m))
        if m.pretrained:
            row["DeLong p vs scratch"] = compare(m, scratch, "ecd")
        if m.kind == "cnn":
            row["DeLong p vs ROI logistic"] = compare(m, roi, "ecd")
        rows4.append(row)
    return {"table3_fdg": pd.DataFrame(rows3), "table4_ecd": pd.DataFrame(rows4), "delong": pd.DataFrame(comparisons)}


def mmse_table(res: Results) -> pd.DataFrame:
    rows = []
    for role in ("fdg", "ecd"):
        for m in res.select(role, task="mmse"):
            met = res.metrics(m)
            row = {"model": m.label, "kind": m.kind}
            for split in ("train", "test"):
                s = met.get(split, {})
                row.update(
                    {
                        f"{split} n": s.get("n"),
                        f"{split} R2": s.get("r2"),
                        f"{split} r": s.get("pearson_r"),
                        f"{split} p": s.get("p"),
                        f"{split} MAE": s.get("mae"),
                    }
                )
            rows.append(row)
    return pd.DataFrame(rows)


def write_table(df: pd.DataFrame, out_dir: Path, name: str) -> None:
    with atomic_output(out_dir / f"{name}.tsv") as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.4g")
    shown = df.drop(columns=[c for c in ("kind", "auc", "auc_ci_low", "auc_ci_high") if c in df.columns])
    shown = shown.astype(object).where(shown.notna(), None)  # empty cells, not "nan"
    write_text(out_dir / f"{name}.md", shown.to_markdown(index=False, floatfmt=".3g", missingval="") + "\n")


# --- the summary: which wins, stated plainly --------------------------------------------------------------


def _auc_text(row: pd.Series) -> str:
    return f"AUC {row['auc']:.3f} ({row['auc_ci_low']:.3f}-{row['auc_ci_high']:.3f})"


def _verdict(a: pd.Series, b: pd.Series, p: float) -> str:
    if a["auc"] == b["auc"]:
        return f"{a['model']} and {b['model']} tie ({_auc_text(a)}; DeLong p = {p:.3g})"
    win, lose = (a, b) if a["auc"] > b["auc"] else (b, a)
    if p < 0.05:
        return f"{win['model']} ({_auc_text(win)}) beats {lose['model']} ({_auc_text(lose)}); DeLong p = {p:.3g}"
    return (
        f"{win['model']} ({_auc_text(win)}) scores higher than {lose['model']} ({_auc_text(lose)}), but the "
        f"difference is not significant on this test set (DeLong p = {p:.3g})"
    )


def summary_sentences(tables: dict[str, pd.DataFrame], mmse: pd.DataFrame) -> list[str]:
    t3, t4, dl = tables["table3_fdg"], tables["table4_ecd"], tables["delong"]

    def p_of(cohort: str, a: str, b: str) -> float:
        hit = dl[(dl["cohort"] == cohort) & (dl["model_a"] == a) & (dl["model_b"] == b)]
        return float(hit["p"].iloc[0])

    out = []
    cnn3 = t3[t3["kind"] == "cnn"]
    best3 = cnn3.loc[cnn3["auc"].idxmax()]
    roi3 = t3[(t3["kind"] == "roi") & (t3["pretrain_size"] == best3["pretrain_size"])].iloc[0]
    out.append(
        f"FDG PET (test n={int(best3['n_test'])}), best CNN against the ROI baseline on the same training "
        f"set: {_verdict(best3, roi3, p_of('fdg', best3['model'], roi3['model']))}."
    )
    cnn4 = t4[t4["kind"] == "cnn"]
    best4 = cnn4.loc[cnn4["auc"].idxmax()]
    roi4 = t4[t4["kind"] == "roi"].iloc[0]
    out.append(
        f"ECD SPECT (test n={int(best4['n_test'])}), best CNN against the ROI baseline: "
        f"{_verdict(best4, roi4, p_of('ecd', best4['model'], roi4['model']))}."
    )
    scratch = t4[t4["model"].str.contains("scratch")].iloc[0]
    pre = cnn4[cnn4["pretrain_size"] != ""]
    if len(pre):
        big = pre.loc[pre["pretrain_size"].astype(int).idxmax()]
        out.append(f"Transfer from FDG: {_verdict(big, scratch, p_of('ecd', big['model'], scratch['model']))}.")
    for role_rows in (mmse.iloc[i : i + 2] for i in range(0, len(mmse), 2)):
        if len(role_rows) == 2 and role_rows["test MAE"].notna().all():
            a, b = role_rows.iloc[0], role_rows.iloc[1]
            win, lose = (a, b) if a["test MAE"] <= b["test MAE"] else (b, a)
            out.append(
                f"MMSE: {win['model']} has the lower test MAE ({win['test MAE']:.2f} vs "
                f"{lose['test MAE']:.2f}; R² {win['test R2']:.2f} vs {lose['test R2']:.2f})."
            )
    return out


def summary_html(sentences: list[str], tables: dict[str, pd.DataFrame], mmse: pd.DataFrame) -> str:
    parts = [
        "<html><head><meta charset='utf-8'><title>adtransfer summary</title></head><body>",
        "<h2>Which model wins on this cohort</h2><ul>",
    ]
    parts += [f"<li>{html.escape(s)}</li>" for s in sentences]
    parts.append("</ul>")
    for title, df in (
        ("Table 3: FDG PET test set", tables["table3_fdg"]),
        ("Table 4: ECD SPECT test set", tables["table4_ecd"]),
        ("MMSE regression", mmse),
    ):
        shown = df.drop(columns=[c for c in ("kind", "auc", "auc_ci_low", "auc_ci_high") if c in df.columns])
        parts += [f"<h3>{title}</h3>", shown.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="")]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_tables(
    results_dir: str | os.PathLike, sizes: list[int], out_dir: str | os.PathLike, summary_path: str | os.PathLike
) -> list[str]:
    res = Results(results_dir, sizes)
    out = Path(out_dir)
    tables = classification_tables(res)
    mmse = mmse_table(res)
    for name, df in {**tables, "mmse": mmse}.items():
        write_table(df, out, name)
    sentences = summary_sentences(tables, mmse)
    write_text(out / "summary.md", "\n".join(f"- {s}" for s in sentences) + "\n")
    write_text(summary_path, summary_html(sentences, tables, mmse))
    return sentences


# --- figures -------------------------------------------------------------------------------------------


def roc_curves(
    results_dir: str | os.PathLike, sizes: list[int], role: str, path: str | os.PathLike, dpi: int = 120
) -> None:
    res = Results(results_dir, sizes)
    curves = []
    for m in res.select(role):
        test, auc = res.test_scores(m), res.metrics(m)["auc"]["ensemble"]
        curves.append(
            {
                "label": m.label,
                "y": test["target"].to_numpy(int),
                "score": test["ensemble"].to_numpy(),
                "style": "--" if m.kind == "roi" else "-",
                **auc,
            }
        )
    title = {"fdg": "FDG PET: AD vs NC", "ecd": "ECD SPECT: AD vs NC"}[role]
    figures.roc_figure(curves, path, title, dpi)


def sample_size(results_dir: str | os.PathLike, sizes: list[int], path: str | os.PathLike, dpi: int = 120) -> None:
    res = Results(results_dir, sizes)
    series = {
        ("fdg", "cnn"): "FDG PET, Inception v3",
        ("fdg", "roi"): "FDG PET, ROI logistic",
        ("ecd", "cnn"): "ECD SPECT, fine-tuned from FDG",
    }
    points = []
    for m in res.models:
        key = (m.role, m.kind)
        if m.classify and m.size is not None and key in series:
            points.append({"series": series[key], "size": m.size, **res.metrics(m)["auc"]["ensemble"]})
    refs = [
        {"label": f"ECD SPECT, {m.label}", **res.metrics(m)["auc"]["ensemble"]}
        for m in res.select("ecd")
        if m.size is None
    ]
    figures.sample_size_figure(pd.DataFrame(points), refs, path, dpi)


def mmse_scatter(results_dir: str | os.PathLike, sizes: list[int], path: str | os.PathLike, dpi: int = 120) -> None:
    res = Results(results_dir, sizes)
    panels = [
        (m.label, res.predictions(m), res.metrics(m)) for role in ("fdg", "ecd") for m in res.select(role, task="mmse")
    ]
    figures.mmse_scatter(panels, path, dpi)


def learning_curves(results_dir: str | os.PathLike, sizes: list[int], path: str | os.PathLike, dpi: int = 120) -> None:
    res = Results(results_dir, sizes)
    histories = {
        m.label: pd.read_csv(res.root / "models" / m.name / "history.tsv", sep="\t")
        for m in res.models
        if m.kind == "cnn"
    }
    figures.learning_curves(histories, path, dpi)


def tsne(
    features_h5: str | os.PathLike,
    path: str | os.PathLike,
    title: str,
    seed: int = 0,
    perplexity: float = 30.0,
    dpi: int = 120,
) -> None:
    """t-SNE of each subject's FC features (mean over its three mosaics)."""
    with h5py.File(features_h5, "r") as h5:
        feats = h5["features"][()].mean(axis=1)
        diagnosis = h5["diagnosis"].asstr()[()]
        split = h5["split"].asstr()[()]
    figures.tsne_figure(feats, np.asarray(diagnosis), np.asarray(split), path, title, seed, perplexity, dpi)


def _truth_columns(truth: dict) -> dict:
    top = truth.get("top_regions", truth)
    return {
        "mass in altered regions / chance": truth.get("ratio"),
        "altered among top 10 regions": top.get("hits"),
        "top regions": ", ".join(top.get("regions", [])[:5]),
    }


def _map_text(map_size: int, mosaic_size: int | None) -> str:
    text = f"{map_size}x{map_size} map" + (f" on {mosaic_size} px" if mosaic_size else "")
    if map_size % 4:
        text += ", cells straddle tiles (split by area)"
    return text


def explanation_table(results_dir: str | os.PathLike, sizes: list[int]) -> pd.DataFrame:
    """Every explanation of every model, scored the same way against a synthetic cohort's ground truth: Grad-CAM
    of each CNN classifier per scored layer, its region occlusion, and each ROI baseline's coefficients. "mass in
    altered regions / chance" is the map's share inside the altered regions over their share of the brain (1 =
    chance); "altered among top 10 regions" counts the altered regions among the ten ranked first."""
    res = Results(results_dir, sizes)
    rows = []
    for m in res.models:
        folder = res.root / "explain" / m.name
        base = {"model": m.label, "task": m.task}
        if m.kind == "cnn" and m.classify:
            s = json.loads((folder / "gradcam_summary.json").read_text())
            layers = s.get("layers") or {
                s["layer"]: {"map_size": s["map_size"], "ground_truth": s.get("ground_truth", {})}
            }
            for layer, entry in layers.items():
                main = " (figures)" if layer == s["layer"] and len(layers) > 1 else ""
                rows.append(
                    {
                        **base,
                        "explanation": f"Grad-CAM {layer}{main}",
                        "resolution": _map_text(entry["map_size"][0], s.get("mosaic_size")),
                        **_truth_columns(entry.get("ground_truth", {})),
                    }
                )
            occlusion = folder / "occlusion_summary.json"
            if occlusion.exists():
                o = json.loads(occlusion.read_text())
                rows.append(
                    {
                        **base,
                        "explanation": "region occlusion (drop in P(AD))",
                        "resolution": f"AAL3 regions, {o['regions']['measured']} in the crop, "
                        f"{o['n_test'].get('AD', 0)} AD test subjects",
                        **_truth_columns(o.get("ground_truth", {})),
                    }
                )
        elif m.kind == "roi":
            s = json.loads((folder / "explain_summary.json").read_text())
            rows.append(
                {
                    **base,
                    "explanation": "standardized coefficients",
                    "resolution": f"AAL3 regions, {s.get('n_regions', '')} in the crop",
                    **_truth_columns(s.get("ground_truth", {})),
                }
            )
    return pd.DataFrame(rows)


def matching_baseline(res: Results, m: Model) -> Model:
    """The ROI baseline trained on the same subjects as a CNN."""
    return next(
        b for b in res.models if b.kind == "roi" and (b.role, b.task, b.set_column) == (m.role, m.task, m.set_column)
    )


def explanation_figure(
    results_dir: str | os.PathLike,
    sizes: list[int],
    model: str,
    cache: str | os.PathLike,
    path: str | os.PathLike,
    dpi: int = 120,
) -> None:
    """Grad-CAM (mean AD map), region occlusion and the matching ROI baseline's coefficients of one model, side
    by side on the grey-matter template, each map in the direction of AD and scaled to its own maximum."""
    import nibabel as nib

    from adtransfer.explain import crop_grid_of
    from adtransfer.grid import crop
    from adtransfer.templates import MNI_2MM, load_templates

    res = Results(results_dir, sizes)
    m = next(x for x in res.models if x.name == model)
    roi = matching_baseline(res, m)
    with h5py.File(cache, "r") as h5:
        crop_grid = crop_grid_of(dict(h5.attrs))

    def volume(path: Path) -> np.ndarray:
        return crop(np.asarray(nib.load(str(path)).dataobj, np.float32), MNI_2MM, crop_grid)

    folder = res.root / "explain"
    g = json.loads((folder / m.name / "gradcam_summary.json").read_text())
    o = json.loads((folder / m.name / "occlusion_summary.json").read_text())
    size = g["map_size"][0]
    panels = [
        (f"Grad-CAM {g['layer']} ({size}x{size}), mean AD test map", volume(folder / m.name / "gradcam_AD.nii.gz")),
        (
            f"region occlusion: drop in P(AD), {o['n_test'].get('AD', 0)} AD test subjects",
            volume(folder / m.name / "occlusion_AD.nii.gz"),
        ),
        (f"{roi.label}: -coefficient (lower uptake -> AD)", -volume(folder / roi.name / "coefficients.nii.gz")),
    ]
    gm = crop(load_templates().gm, MNI_2MM, crop_grid)
    figures.explanation_panels(panels, gm, path, f"What {m.label} looks at, three ways", dpi)
