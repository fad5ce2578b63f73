"""The results tree's summary: Tables 3-4 (CNNs and ROI baselines), the pre-specified comparisons (Holm within each
family, paired bootstrap CIs), the replicates, the MMSE table, the one-page summary, and the figures built from
predictions and metrics. Files are found under one results folder by adtransfer.layout, the grid is the catalog's
of a `grid_spec` (what the workflow passes as --grid). No TensorFlow.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from adtransfer import layout
from adtransfer.catalog import Model, comparisons, explained_from_spec, grid_from_spec, matching_baseline
from adtransfer.errors import InputError
from adtransfer.io import atomic_output, read_nifti, write_text
from adtransfer.results import figures
from adtransfer.results.evaluate import (
    delong_test,
    holm,
    paired_auc_difference,
    paired_mae_difference,
    read_predictions,
    subset,
)

HIDDEN = ("kind", "name", "auc", "auc_ci_low", "auc_ci_high", "auc_replicate_mean", "auc_replicate_sd")


class Results:
    """Predictions and metrics of the model grid under a results folder. `models` is replicate 0 of every model
    (the tables' rows, explanations); `replicas(m)` gives all replicates of one."""

    def __init__(self, root: str | os.PathLike, spec: dict | str):
        """spec: the grid's `catalog.grid_spec` (a dict or its JSON text)."""
        self.root = Path(root)
        self.catalog = grid_from_spec(spec)
        self.models = [m for m in self.catalog if m.replicate == 0]
        # the CNN classifiers the workflow explained (config explain.models): the only ones with explanation files
        self.explained = {m.name for m in explained_from_spec(spec)}
        self.by_name = {m.name: m for m in self.catalog}

    def select(self, role: str, task: str = "classify", kind: str | None = None) -> list[Model]:
        return [m for m in self.models if m.role == role and m.task == task and (kind is None or m.kind == kind)]

    def replicas(self, m: Model) -> list[Model]:
        return sorted((x for x in self.catalog if x.first == m.name), key=lambda x: x.replicate)

    def path(self, func, *args) -> Path:
        """A file of this results tree: path(layout.predictions, "fdg/n100")."""
        return Path(func(*args, root=str(self.root)))

    def predictions(self, m: Model) -> pd.DataFrame:
        return read_predictions(self.path(layout.predictions, m.name))

    def metrics(self, m: Model) -> dict:
        return json.loads(self.path(layout.test_metrics, m.name).read_text())

    def validation(self, m: Model) -> dict:
        """The training job's validation metrics (results/models/{m}/metrics.json); {} for ROI baselines."""
        path = self.path(layout.model_file, m.name, "metrics.json")
        return json.loads(path.read_text()) if m.kind == "cnn" and path.exists() else {}

    def test_scores(self, m: Model) -> pd.DataFrame:
        return subset(self.predictions(m), "test", classify=m.classify).set_index("subject_id").sort_index()

    def replicate_aucs(self, m: Model) -> list[float]:
        return [self.metrics(r)["auc"]["ensemble"]["auc"] for r in self.replicas(m)]


# --- pre-specified comparisons -------------------------------------------------------------------------


def compare(res: Results, a: Model, b: Model, n_boot: int, seed: int) -> dict:
    """a vs b on the same test subjects: AUC (DeLong p, paired bootstrap CI of the difference) for classifiers,
    MAE (Wilcoxon signed-rank p on absolute errors, paired bootstrap CI) for MMSE models."""
    sa, sb = res.test_scores(a), res.test_scores(b)
    if not sa.index.equals(sb.index) or not np.allclose(sa["target"], sb["target"]):
        raise ValueError(f"{a.name} and {b.name} were not tested on the same subjects and targets")
    row = {"model_a": a.label, "model_b": b.label, "name_a": a.name, "name_b": b.name, "n_test": len(sa)}
    if a.classify:
        y = sa["target"].to_numpy(int)
        d = delong_test(y, sa["ensemble"], sb["ensemble"])
        diff = paired_auc_difference(y, sa["ensemble"], sb["ensemble"], n_boot, seed)
        return row | {
            "measure": "AUC",
            "value_a": d["auc_a"],
            "value_b": d["auc_b"],
            **diff,
            "test": "DeLong",
            "p": d["p"],
        }
    d = paired_mae_difference(sa["target"], sa["ensemble"], sb["ensemble"], n_boot, seed)
    return row | {
        "measure": "MAE",
        "value_a": d["mae_a"],
        "value_b": d["mae_b"],
        "difference": d["difference"],
        "ci_low": d["ci_low"],
        "ci_high": d["ci_high"],
        "test": "Wilcoxon signed-rank",
        "p": d["p"],
    }


def comparison_table(
    res: Results, spec: dict | None, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """Every pre-specified comparison with its raw p, its Holm-adjusted p within the family and the verdict."""
    rows = []
    for family, pairs in comparisons(spec, res.catalog).items():
        fam = [compare(res, res.by_name[a], res.by_name[b], n_boot, seed) for a, b in pairs]
        adjusted, reject = holm([r["p"] for r in fam], alpha)
        for r, padj, rej in zip(fam, adjusted, reject, strict=True):
            rows.append(
                {"family": family, "family_size": len(fam), **r, "p_holm": float(padj), "significant_holm": bool(rej)}
            )
    columns = [
        "family",
        "family_size",
        "model_a",
        "model_b",
        "measure",
        "value_a",
        "value_b",
        "difference",
        "ci_low",
        "ci_high",
        "test",
        "p",
        "p_holm",
        "significant_holm",
        "n_test",
        "name_a",
        "name_b",
    ]
    return pd.DataFrame(rows, columns=columns)


def transfer_replicates(res: Results) -> pd.DataFrame:
    """Per FDG size and replicate: test AUC fine-tuned, AUC of the comparator without FDG stage trained with the
    same replicate seed, and the paired difference."""
    rows = []
    scratch = res.by_name["ecd/scratch"]
    comparators = {r.replicate: r for r in res.replicas(scratch)}
    for m in res.select("ecd", kind="cnn"):
        if m.pretrained is None:
            continue
        for r in res.replicas(m):
            b = comparators.get(r.replicate)
            if b is None:
                continue
            auc_a = res.metrics(r)["auc"]["ensemble"]["auc"]
            auc_b = res.metrics(b)["auc"]["ensemble"]["auc"]
            rows.append(
                {
                    "model_a": m.label,
                    "model_b": scratch.label,
                    "size": m.size,
                    "replicate": r.replicate,
                    "name_a": r.name,
                    "name_b": b.name,
                    "auc_a": auc_a,
                    "auc_b": auc_b,
                    "difference": auc_a - auc_b,
                }
            )
    return pd.DataFrame(
        rows, columns=["model_a", "model_b", "size", "replicate", "name_a", "name_b", "auc_a", "auc_b", "difference"]
    )


def transfer_effect(reps: pd.DataFrame, size: int) -> dict:
    d = reps.loc[reps["size"] == size, "difference"].to_numpy(float)
    return {
        "n": len(d),
        "mean": float(d.mean()),
        "sd": float(d.std(ddof=1)) if len(d) > 1 else float("nan"),
        "min": float(d.min()),
        "max": float(d.max()),
        "positive": int((d > 0).sum()),
        "negative": int((d < 0).sum()),
    }


# --- tables --------------------------------------------------------------------------------------------


def _diff_text(c: pd.Series) -> str:
    return f"{c['difference']:+.3f} ({c['ci_low']:+.3f} to {c['ci_high']:+.3f}); {c['p']:.2g}, {c['p_holm']:.2g}"


def paper_row(res: Results, m: Model, metrics: dict, comps: pd.DataFrame) -> dict:
    """One row as the paper prints it: rates with counts, F1, AUC with its CI; the replicates' mean and SD;
    its pre-specified comparisons (difference with paired bootstrap CI, raw and Holm p); numbers for machines."""
    at = metrics["at_threshold"]
    auc = metrics["auc"]["ensemble"]
    reps = res.replicate_aucs(m)
    row = {
        "model": m.label,
        "name": m.name,
        "kind": m.kind,
        "pretrain_size": m.size if m.size is not None else "",
        "Sensitivity (%)": at["sensitivity"]["text"],
        "Specificity (%)": at["specificity"]["text"],
        "Precision (%)": at["precision"]["text"],
        "Accuracy (%)": at["accuracy"]["text"],
        "F1 score (%)": f"{100 * at['f1']:.1f}",
        "AUC for AD/NC (95% CI)": f"{auc['auc']:.3f} ({auc['ci_low']:.3f}-{auc['ci_high']:.3f})",
        "AUC over replicates, mean (SD)": (
            f"{np.mean(reps):.3f} ({np.std(reps, ddof=1):.3f}), {len(reps)} runs" if len(reps) > 1 else ""
        ),
        "auc": auc["auc"],
        "auc_ci_low": auc["ci_low"],
        "auc_ci_high": auc["ci_high"],
        "auc_replicate_mean": float(np.mean(reps)),
        "auc_replicate_sd": float(np.std(reps, ddof=1)) if len(reps) > 1 else float("nan"),
        "threshold": at["threshold"],
        "n_test": metrics["n_test"],
    }
    for _, c in comps[comps["name_a"] == m.name].iterrows():
        row[f"ΔAUC vs {_comparator(m, res.by_name[c['name_b']])} (95% CI); p, Holm p"] = _diff_text(c)
    return row


def _comparator(a: Model, b: Model) -> str:
    """What b is to a, as a table column names it."""
    if b.kind == "roi":
        return "ROI logistic"
    if b.size is None:
        return b.label.removeprefix("Inception v3, ")
    if a.size is not None and b.size < a.size:
        return "smaller FDG size"
    return b.label


def classification_tables(res: Results, comps: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """table3_fdg (a CNN and an ROI-logistic row per pre-training size), table4_ecd (the comparator without FDG
    stage, each size, ROI)."""
    rows3 = [paper_row(res, m, res.metrics(m), comps) for m in res.select("fdg")]
    ecd = res.select("ecd")
    order = [m for m in ecd if m.kind == "cnn" and not m.pretrained] + [m for m in ecd if m.pretrained]
    order += [m for m in ecd if m.kind == "roi"]
    rows4 = [paper_row(res, m, res.metrics(m), comps) for m in order]
    return {"table3_fdg": pd.DataFrame(rows3), "table4_ecd": pd.DataFrame(rows4)}


def _ci(s: dict, key: str) -> str:
    lo, hi = s.get(f"{key}_ci", [np.nan, np.nan])
    return f"{s[key]:.3f} ({lo:.3f} to {hi:.3f})"


def mmse_table(res: Results) -> pd.DataFrame:
    """Per MMSE model and split: n, the paper's R² (squared Pearson r) with its p, the coefficient of determination,
    MAE; each with its bootstrap 95 % CI."""
    rows = []
    for role in ("fdg", "ecd"):
        for m in res.select(role, task="mmse"):
            met = res.metrics(m)
            row = {"model": m.label, "name": m.name, "kind": m.kind}
            for split in ("train", "test"):
                s = met.get(split)
                if not s:
                    continue
                if "pearson_r2" not in s:
                    raise InputError(
                        f"{res.path(layout.test_metrics, m.name)}: written by an older adtransfer (no Pearson r² / "
                        "coefficient of determination); recompute it: snakemake --forcerun evaluate"
                    )
                row.update(
                    {
                        f"{split} n": s["n"],
                        f"{split} R² = Pearson r² (paper) (95% CI)": _ci(s, "pearson_r2"),
                        f"{split} Pearson p": f"{s['p']:.2g}",
                        f"{split} coefficient of determination (95% CI)": _ci(s, "r2_determination"),
                        f"{split} MAE (95% CI)": f"{s['mae']:.2f} ({s['mae_ci'][0]:.2f} to {s['mae_ci'][1]:.2f})",
                        f"{split} pearson_r2": s["pearson_r2"],
                        f"{split} r2_determination": s["r2_determination"],
                        f"{split} MAE": s["mae"],
                    }
                )
            rows.append(row)
    return pd.DataFrame(rows)


def _shown(df: pd.DataFrame) -> pd.DataFrame:
    """What a person reads: text columns, no machine duplicates."""
    drop = [c for c in df.columns if c in HIDDEN or c.endswith(("pearson_r2", "r2_determination", " MAE"))]
    shown = df.drop(columns=drop)
    return shown.astype(object).where(shown.notna(), "")  # empty cells, not "nan" or "None"


def write_table(df: pd.DataFrame, tsv: str | os.PathLike, md: str | os.PathLike) -> None:
    """A table for machines (TSV) and for people (Markdown)."""
    with atomic_output(tsv) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    write_text(md, _shown(df).to_markdown(index=False, floatfmt=".3g", missingval="") + "\n")


# --- the summary: what the statistics say, stated plainly -----------------------------------------------


def _decided_by(c: pd.Series) -> str:
    """The test that decides a comparison, and the multiplicity correction applied to its p value."""
    k = int(c["family_size"])
    return f"the {c['test']} test, Holm-adjusted within family '{c['family']}' ({k} test{'s' if k > 1 else ''})"


def _verdict(c: pd.Series, alpha: float) -> str:
    """What the test decided (the Holm-adjusted p of the comparison's own test against alpha); the direction of a
    significant two-sided test is that of the estimated difference. The bootstrap CI is the uncertainty shown
    beside it: when it disagrees with the test, the sentence says so instead of letting the CI look decisive."""
    ci_has_zero = c["ci_low"] <= 0 <= c["ci_high"]
    if c["significant_holm"]:
        better = c["model_a"] if (c["difference"] > 0) == (c["measure"] == "AUC") else c["model_b"]
        out = f"significant at {alpha:g}: {better} is better on this test set"
        if ci_has_zero:
            out += " (the bootstrap CI still includes 0: the difference is imprecisely estimated)"
        return out
    out = f"not significant at {alpha:g}: no difference shown on this test set"
    if not ci_has_zero:
        out += f" (the bootstrap CI excludes 0, but the CI does not decide: {c['test']} after Holm does)"
    return out


def comparison_sentence(c: pd.Series, alpha: float) -> str:
    """One pre-specified comparison: the estimate with its paired bootstrap CI (the uncertainty), then the test
    that decided (named, with its raw and Holm-adjusted p) and its verdict."""
    digits = 3 if c["measure"] == "AUC" else 2
    return (
        f"{c['model_a']} vs {c['model_b']} (test n={int(c['n_test'])}): {c['measure']} {c['value_a']:.{digits}f} vs "
        f"{c['value_b']:.{digits}f}, difference {c['difference']:+.{digits}f} (paired bootstrap 95% CI "
        f"{c['ci_low']:+.{digits}f} to {c['ci_high']:+.{digits}f}). Decided by {_decided_by(c)}: "
        f"p = {c['p']:.2g}, Holm-adjusted p = {c['p_holm']:.2g}: {_verdict(c, alpha)}."
    )


def _cnn_against_roi(res: Results, comps: pd.DataFrame, role: str, cohort: str, alpha: float) -> str | None:
    """A cohort's CNN against its ROI baseline. A CNN is chosen on validation AUC only among CNNs validated on
    the same subjects (one split column): FDG CNNs of different pre-training sizes each have their own nested
    train/validation split, so their validation AUCs come from different subjects and cannot rank them; then the
    pre-specified test comparison of the largest pre-training size (fixed in advance, not chosen) is reported."""
    cnns = res.select(role, kind="cnn")
    if not cnns:
        return None
    val_sets = sorted({m.set_column for m in cnns}, key=lambda c: (len(c), c))
    if len(val_sets) == 1:
        scored = [(res.validation(m).get("val_auc_ensemble"), m) for m in cnns]
        scored = [(v, m) for v, m in scored if v is not None]
        if not scored:
            return None
        val, chosen = max(scored, key=lambda t: t[0])
        head = (
            f"{cohort}, the CNN chosen on validation AUC ({chosen.label}, validation AUC {val:.3f}; all "
            f"{len(scored)} {cohort} CNNs validated on the same subjects, split column {val_sets[0]})"
        )
    else:
        chosen = max(cnns, key=lambda m: m.size or 0)
        head = (
            f"{cohort}: no CNN is chosen on validation, as the {len(cnns)} CNNs were validated on different "
            f"subjects (each pre-training size has its own train/validation split: {', '.join(val_sets)}); the "
            f"largest pre-training size, fixed in advance ({chosen.label})"
        )
    hit = comps[(comps["name_a"] == chosen.name) & (comps["name_b"].str.startswith("roi/"))]
    if not len(hit):
        return None
    return f"{head}, against the ROI baseline: {comparison_sentence(hit.iloc[0], alpha)}"


def summary_sentences(
    res: Results, comps: pd.DataFrame, reps: pd.DataFrame, mmse: pd.DataFrame, alpha: float = 0.05
) -> list[str]:
    out = []
    for _, c in comps[comps["family"] == "primary"].iterrows():
        out.append(f"Primary comparison: {comparison_sentence(c, alpha)}")
    # the transfer effect over replicates (fine-tuned minus the comparator with the same seed)
    for size in [int(reps["size"].max())] if len(reps) else []:  # the largest FDG size (all: replicates.tsv)
        e, row = transfer_effect(reps, size), reps[reps["size"] == size].iloc[0]
        if e["n"] == 1:
            out.append(
                f"Transfer effect, {row['model_a']} minus {row['model_b']}: one training run only "
                f"(ΔAUC {e['mean']:+.3f}); one run is one draw, set train.replicates to measure its spread."
            )
            continue
        out.append(
            f"Transfer effect over {e['n']} replicates (same seed for both models), {row['model_a']} minus "
            f"{row['model_b']}: mean ΔAUC {e['mean']:+.3f} (SD {e['sd']:.3f}, range {e['min']:+.3f} to "
            f"{e['max']:+.3f}); {e['positive']} of {e['n']} replicates favour fine-tuning, {e['negative']} the "
            f"comparator. FDG pre-training ran once: the spread is that of the ECD stage only."
        )
    # each cohort's CNN against its ROI baseline (chosen on validation only among CNNs sharing validation subjects)
    for role, cohort in (("fdg", "FDG PET"), ("ecd", "ECD SPECT")):
        sentence = _cnn_against_roi(res, comps, role, cohort, alpha)
        if sentence:
            out.append(sentence)
    for family in [f for f in comps["family"].unique() if f not in ("primary", "mmse")]:
        fam = comps[comps["family"] == family]
        sig = fam[fam["significant_holm"]]
        listed = "; ".join(
            f"{c['model_a']} vs {c['model_b']} ({c['test']} Holm-adjusted p {c['p_holm']:.2g}; Δ{c['measure']} "
            f"{c['difference']:+.3f}, paired bootstrap 95% CI {c['ci_low']:+.3f} to {c['ci_high']:+.3f})"
            for _, c in sig.iterrows()
        )
        tests = " / ".join(dict.fromkeys(fam["test"]))
        out.append(
            f"Family '{family}': {len(sig)} of {len(fam)} comparisons significant at {alpha:g}, decided by the "
            f"{tests} test{'s' if ' / ' in tests else ''} with Holm adjustment within the family"
            + (f": {listed}." if len(sig) else ".")
        )
    for _, m in mmse.iterrows():
        if m["kind"] != "cnn" or "test n" not in m or pd.isna(m.get("test n")):
            continue
        out.append(
            f"MMSE, {m['model']} (test n={int(m['test n'])}): R² as in the paper (squared Pearson r) "
            f"{m['test R² = Pearson r² (paper) (95% CI)']}, Pearson p = {m['test Pearson p']}; coefficient of "
            f"determination {m['test coefficient of determination (95% CI)']}; MAE {m['test MAE (95% CI)']}."
        )
    for _, c in comps[comps["family"] == "mmse"].iterrows():
        out.append(f"MMSE: {comparison_sentence(c, alpha)}")
    return out


# --- registration QC of the native-space cohorts: who was flagged, and what was done with them ------------

REGISTRATION_HEADING = "Registration QC of the native-space cohorts"


def read_registration_qc(path: str | os.PathLike) -> pd.DataFrame:
    """A registration QC table (`adtransfer registration-qc --out`), subject ids as text ("NA" stays an id)."""
    qc = pd.read_csv(path, sep="\t", dtype={"subject_id": str}, keep_default_na=False, na_values={"similarity": [""]})
    missing = {"subject_id", "similarity", "min_similarity", "flagged", "decision"} - set(qc.columns)
    if missing:
        raise InputError(f"{path}: not a registration QC table (no column {', '.join(sorted(missing))})")
    qc["flagged"] = qc["flagged"].astype(str).str.lower().eq("true")
    return qc


def registration_sentence(cohort: str, qc: pd.DataFrame) -> str:
    """One native-space cohort: how many subjects were registered, how similar to the template, which were flagged
    (id and similarity, every one of them) and whether they were excluded or kept (preprocess.registration.on_fail).
    The word "flagged" appears only when some subject is."""
    n = len(qc)
    if n == 0:
        return f"Cohort {cohort} (native space): no subject in its registration QC table."
    sim = qc["similarity"].astype(float)
    threshold = float(qc["min_similarity"].iloc[0])
    head = (
        f"Cohort {cohort} (native space): {n} subject{'s' if n != 1 else ''} registered to the modality template, "
        f"similarity {sim.min():.3f} to {sim.max():.3f} (median {sim.median():.3f})"
    )
    flagged = qc[qc["flagged"]].sort_values("similarity")
    if flagged.empty:
        return f"{head}; none below preprocess.registration.min_similarity = {threshold:g}: all {n} used."
    listed = ", ".join(f"{r.subject_id} ({r.similarity:.3f})" for r in flagged.itertuples())
    k = len(flagged)
    excluded = int(flagged["decision"].eq("excluded").sum())
    if excluded == k:
        what = (
            "excluded (preprocess.registration.on_fail: exclude): in no cache, split or result of this run, "
            f"{n - k} of {n} subjects used"
        )
    elif excluded == 0:
        what = (
            "kept (preprocess.registration.on_fail: keep): used in every result of this cohort; check their "
            "registration QC images"
        )
    else:  # not what registration_qc writes; said as it is rather than summarized wrongly
        what = f"{excluded} of them excluded and {k - excluded} kept"
    return (
        f"{head}; {k} flagged below preprocess.registration.min_similarity = {threshold:g} and {what}. "
        f"Flagged: {listed}."
    )


def registration_sentences(qc_tables: dict[str, str | os.PathLike] | None) -> list[str]:
    """One sentence per native-space cohort (cohort name -> its registration QC table); MNI-space cohorts are not
    registered and are not passed."""
    return [registration_sentence(c, read_registration_qc(p)) for c, p in sorted((qc_tables or {}).items())]


def findings_markdown(findings: list[str], sections: dict[str, list[str]] | None = None) -> str:
    """The findings file: a Markdown list of findings, then each further section (a heading and its list)."""
    text = "".join(f"- {s}\n" for s in findings)
    for title, items in (sections or {}).items():
        if items:
            text += f"\n## {title}\n\n" + "".join(f"- {s}\n" for s in items)
    return text


def read_findings(path: str | os.PathLike) -> tuple[list[str], dict[str, list[str]]]:
    """The findings file back: the findings (the list before any heading) and the further sections by title."""
    findings: list[str] = []
    sections: dict[str, list[str]] = {}
    current = findings
    for line in Path(path).read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        elif line.startswith("- "):
            current.append(line[2:])
    return findings, sections


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2430;
background:#f4f6f9;margin:0}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px;background:#fff;box-shadow:0 0 12px #0001}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:2px solid #dde3ea;
padding-bottom:.2em}.sub{color:#5b6675;margin:0 0 1em}
ol.findings{padding-left:1.3em}ol.findings li{margin:.45em 0}
.sig{border-left:4px solid #2e7d32;padding-left:.5em}.ns{border-left:4px solid #9aa5b1;padding-left:.5em}
ul.qc{padding-left:1.3em}ul.qc li{margin:.45em 0}.flag{border-left:4px solid #e65100;padding-left:.5em}
.scroll{overflow-x:auto;margin:.4em 0 1em}
table{border-collapse:collapse;font-size:12.5px;min-width:60%}
th,td{border:1px solid #d6dce3;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#eef2f6;font-weight:600}tr:nth-child(even) td{background:#fafbfc}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
figure{margin:0;border:1px solid #e1e6ec;padding:8px;background:#fff}figure img{width:100%;height:auto}
figcaption{font-size:12.5px;color:#4a5563;margin-top:4px}
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def summary_html(
    sentences: list[str],
    tables: dict[str, pd.DataFrame],
    figures_: dict[str, Path],
    alpha: float = 0.05,
    sections: dict[str, list[str]] | None = None,
) -> str:
    """The one-page result: findings with their statistics, further sections of sentences (the registration QC of
    native-space cohorts; an item naming flagged subjects is marked), the tables, the key figures inline (data
    URIs), self-contained CSS; nothing is fetched from a network."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>adtransfer summary</title><style>{CSS}</style></head><body><main>",
        "<h1>adtransfer: result summary</h1>",
        "<p class='sub'>Test-set results of the pre-specified comparisons. Each is decided by its named test "
        f"(DeLong for AUC, Wilcoxon signed-rank for MAE), p values Holm-adjusted within each family, α = {alpha:g}; "
        "differences are shown with paired bootstrap 95 % CIs, their uncertainty. A model is chosen on validation "
        "only among models validated on the same subjects.</p>",
        "<h2>Findings</h2><ol class='findings'>",
    ]
    for s in sentences:
        cls = "sig" if re.search(r": significant at|\b[1-9]\d* of \d+ comparisons significant", s) else "ns"
        parts.append(f"<li class='{cls}'>{html.escape(s)}</li>")
    parts.append("</ol>")
    for title, items in (sections or {}).items():
        parts.append(f"<h2>{html.escape(title)}</h2><ul class='qc'>")
        for s in items:
            parts.append(f"<li class='{'flag' if ' flagged ' in s else 'ns'}'>{html.escape(s)}</li>")
        parts.append("</ul>")
    if figures_:
        parts.append("<h2>Key figures</h2><div class='figs'>")
        for caption, path in figures_.items():
            parts.append(
                f"<figure><img alt='{html.escape(caption)}' src='{_data_uri(Path(path))}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    for title, df in tables.items():
        table = _shown(df).to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="", border=0)
        parts += [f"<h2>{html.escape(title)}</h2>", f"<div class='scroll'>{table}</div>"]
    parts.append("</main></body></html>")
    return "\n".join(parts)


SUMMARY_TABLES = {
    "table3_fdg": "Table 3: FDG PET test set",
    "table4_ecd": "Table 4: ECD SPECT test set",
    "mmse": "MMSE regression",
    "comparisons": "Pre-specified comparisons (raw and Holm-adjusted p)",
    "replicates": "Replicates: ECD fine-tuned minus the comparator, same seed",
}


def synthetic_sentences(truths: dict[str, str | os.PathLike] | None) -> list[str]:
    """One sentence per synthetic cohort: the kind of its AD effect and what that implies for CNN vs ROI baseline."""
    from adtransfer.inputs.synth import synthetic_kind

    out = []
    for role, path in sorted((truths or {}).items()):
        kind, implication = synthetic_kind(json.loads(Path(path).read_text()))
        out.append(f"The {role.upper()} cohort is synthetic ({kind} effect): {implication}.")
    return out


def write_tables(
    results_dir: str | os.PathLike,
    spec: dict | str,
    tables: dict[str, tuple[str | os.PathLike, str | os.PathLike]],
    findings_path: str | os.PathLike,
    comparison_spec: dict | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    truths: dict[str, str | os.PathLike] | None = None,
    registration_qc: dict[str, str | os.PathLike] | None = None,
) -> list[str]:
    """Every table (name -> its TSV and Markdown file, each of layout.TABLES) and the findings (a Markdown list)
    of the grid `spec` under results_dir. `truths`: cohort role -> ground_truth.json of a synthetic cohort.
    `registration_qc`: cohort -> registration QC table of each native-space cohort of the grid, listed in their
    own section of the findings (REGISTRATION_HEADING). Returns the findings, then those sentences."""
    missing = [name for name in layout.TABLES if name not in tables]
    if missing:
        raise ValueError(f"no output file given for table(s) {', '.join(missing)}")
    res = Results(results_dir, spec)
    comps = comparison_table(res, comparison_spec, n_boot, seed, alpha)
    reps = transfer_replicates(res)
    mmse = mmse_table(res)
    written = {**classification_tables(res, comps), "comparisons": comps, "replicates": reps, "mmse": mmse}
    for name, df in written.items():
        write_table(df, *tables[name])
    sentences = summary_sentences(res, comps, reps, mmse, alpha) + synthetic_sentences(truths)
    registration = registration_sentences(registration_qc)
    write_text(findings_path, findings_markdown(sentences, {REGISTRATION_HEADING: registration}))
    return sentences + registration


def write_summary_page(
    tables: dict[str, str | os.PathLike],
    findings_path: str | os.PathLike,
    summary_path: str | os.PathLike,
    figure_paths: dict[str, str | os.PathLike] | None = None,
    alpha: float = 0.05,
) -> None:
    """The one-page result from the written tables (name -> TSV, each of SUMMARY_TABLES), the findings and the
    figures: its own step, so a figure setting redraws the figures and this page, not the tables."""
    sentences, sections = read_findings(findings_path)
    shown = {title: pd.read_csv(tables[name], sep="\t") for name, title in SUMMARY_TABLES.items()}
    figs = {k: Path(v) for k, v in (figure_paths or {}).items() if Path(v).exists()}
    write_text(summary_path, summary_html(sentences, shown, figs, alpha, sections))


# --- figures: each takes the Results of a grid, the PNG and its dpi ------------------------------------


def roc_curves(res: Results, path: str | os.PathLike, dpi: int = 120, role: str = "ecd") -> None:
    """ROC curves of replicate 0 of every classifier of one cohort."""
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


def sample_size(res: Results, path: str | os.PathLike, dpi: int = 120) -> None:
    """Test AUC against the FDG pre-training size: replicate 0 with its bootstrap CI, and every replicate's AUC
    (their spread) where the stage is replicated; the ECD models without FDG stage as horizontal references."""
    series = {
        ("fdg", "cnn"): "FDG PET, Inception v3",
        ("fdg", "roi"): "FDG PET, ROI logistic",
        ("ecd", "cnn"): "ECD SPECT, fine-tuned from FDG",
    }
    points = []
    for m in res.models:
        key = (m.role, m.kind)
        if m.classify and m.size is not None and key in series:
            points.append(
                {
                    "series": series[key],
                    "size": m.size,
                    **res.metrics(m)["auc"]["ensemble"],
                    "replicate_aucs": res.replicate_aucs(m),
                }
            )
    refs = [
        {"label": f"ECD SPECT, {m.label}", **res.metrics(m)["auc"]["ensemble"], "replicate_aucs": res.replicate_aucs(m)}
        for m in res.select("ecd")
        if m.size is None
    ]
    figures.sample_size_figure(pd.DataFrame(points), refs, path, dpi)


def mmse_scatter(res: Results, path: str | os.PathLike, dpi: int = 120) -> None:
    panels = [
        (m.label, res.predictions(m), res.metrics(m)) for role in ("fdg", "ecd") for m in res.select(role, task="mmse")
    ]
    figures.mmse_scatter(panels, path, dpi)


def learning_curves(res: Results, path: str | os.PathLike, dpi: int = 120) -> None:
    """Loss and metric per epoch of replicate 0 of every CNN."""
    histories = {
        m.label: pd.read_csv(res.path(layout.model_file, m.name, "history.tsv"), sep="\t")
        for m in res.models
        if m.kind == "cnn"
    }
    figures.learning_curves(histories, path, dpi)


GRID_FIGURES = {"roc": roc_curves, "sample-size": sample_size, "mmse": mmse_scatter, "learning": learning_curves}


def tsne(features_h5: str | os.PathLike, path: str | os.PathLike, title: str, **options) -> None:
    """t-SNE of each subject's FC features (mean over its three mosaics); options: seed, perplexity, dpi."""
    with h5py.File(features_h5, "r") as h5:
        feats = h5["features"][()].mean(axis=1)
        diagnosis = h5["diagnosis"].asstr()[()]
        split = h5["split"].asstr()[()]
    figures.tsne_figure(feats, np.asarray(diagnosis), np.asarray(split), path, title, **options)


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


def explanation_table(res: Results) -> pd.DataFrame:
    """Every explanation of the explained models, scored the same way against a synthetic cohort's ground truth:
    Grad-CAM of each explained CNN classifier per scored layer, its region occlusion, and each ROI baseline's
    coefficients. "mass in altered regions / chance" is the map's share inside the altered regions over their share
    of the brain (1 = chance); "altered among top 10 regions" counts the altered regions among the ten ranked
    first."""
    rows = []
    for m in res.models:
        base = {"model": m.label, "task": m.task}
        if m.kind == "cnn" and m.classify:
            if m.name not in res.explained:
                continue
            s = json.loads(res.path(layout.explain, m.name, "gradcam_summary.json").read_text())
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
            occlusion = res.path(layout.explain, m.name, "occlusion_summary.json")
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
            s = json.loads(res.path(layout.explain, m.name, "explain_summary.json").read_text())
            rows.append(
                {
                    **base,
                    "explanation": "standardized coefficients",
                    "resolution": f"AAL3 regions, {s.get('n_regions', '')} in the crop",
                    **_truth_columns(s.get("ground_truth", {})),
                }
            )
    return pd.DataFrame(rows)


def explanation_figure(res: Results, model: str, cache: str | os.PathLike, path: str | os.PathLike, dpi=120) -> None:
    """Grad-CAM (mean AD map), region occlusion and the matching ROI baseline's coefficients of one model, side
    by side on the grey-matter template, each map in the direction of AD and scaled to its own maximum."""
    from adtransfer.imaging.cache import crop_grid_of
    from adtransfer.imaging.grid import crop
    from adtransfer.imaging.templates import MNI_2MM, load_templates

    m = next(x for x in res.models if x.name == model)
    roi = matching_baseline(m, res.models)
    with h5py.File(cache, "r") as h5:
        crop_grid = crop_grid_of(dict(h5.attrs))

    def volume(path: Path) -> np.ndarray:
        return crop(np.asarray(read_nifti(path).dataobj, np.float32), MNI_2MM, crop_grid)

    def explained(name: str, file: str) -> Path:
        return res.path(layout.explain, name, file)

    g = json.loads(explained(m.name, "gradcam_summary.json").read_text())
    o = json.loads(explained(m.name, "occlusion_summary.json").read_text())
    size = g["map_size"][0]
    panels = [
        (f"Grad-CAM {g['layer']} ({size}x{size}), mean AD test map", volume(explained(m.name, "gradcam_AD.nii.gz"))),
        (
            f"region occlusion: drop in P(AD), {o['n_test'].get('AD', 0)} AD test subjects",
            volume(explained(m.name, "occlusion_AD.nii.gz")),
        ),
        (f"{roi.label}: -coefficient (lower uptake -> AD)", -volume(explained(roi.name, "coefficients.nii.gz"))),
    ]
    gm = crop(load_templates().gm, MNI_2MM, crop_grid)
    figures.explanation_panels(panels, gm, path, f"What {m.label} looks at, three ways", dpi)
