"""Report figures (matplotlib, Agg): ROC curves, the sample-size curve, MMSE scatters, t-SNE, learning curves,
Grad-CAM overlays and brain-map overlays. Every function writes one PNG atomically. No TensorFlow."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from adtransfer.imaging.mosaic import make_mosaics  # noqa: E402
from adtransfer.io import atomic_output  # noqa: E402

DIAGNOSIS_COLOURS = {"AD": "#d62728", "NC": "#1f77b4", "MCI": "#ff7f0e"}


def save(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)


def roc_figure(curves: Sequence[dict], path: str | os.PathLike, title: str, dpi: int = 120) -> None:
    """One ROC curve per model; each dict has label, y, score, auc, ci_low, ci_high (and optional style)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c in curves:
        fpr, tpr, _ = roc_curve(c["y"], c["score"])
        ax.plot(
            fpr,
            tpr,
            c.get("style", "-"),
            lw=1.6,
            label=f"{c['label']}: AUC {c['auc']:.2f} ({c['ci_low']:.2f}-{c['ci_high']:.2f})",
        )
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    ax.set(
        xlabel="1 - specificity (false positive rate)",
        ylabel="sensitivity (true positive rate)",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.01),
        aspect="equal",
    )
    ax.legend(loc="lower right", fontsize=7, title="test set, 95 % bootstrap CI", title_fontsize=7)
    save(fig, path, dpi)


def sample_size_figure(
    points: pd.DataFrame, references: Sequence[dict], path: str | os.PathLike, dpi: int = 120
) -> None:
    """Test AUC (with CI) against the FDG pre-training size; `points` has series, size, auc, ci_low, ci_high and
    optionally replicate_aucs (every replicate's AUC: drawn as small dots beside the point, with their mean as a
    bar); `references` are horizontal lines (label, auc, ci_low, ci_high, optional replicate_aucs), e.g. ECD
    without FDG stage."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    span = float(np.ptp(points["size"])) or float(points["size"].max())
    for (name, rows), marker in zip(points.groupby("series", sort=False), "osD^v", strict=False):
        rows = rows.sort_values("size")
        err = [rows["auc"] - rows["ci_low"], rows["ci_high"] - rows["auc"]]
        line = ax.errorbar(rows["size"], rows["auc"], yerr=err, marker=marker, capsize=3, label=name)
        colour = line[0].get_color()
        for _, r in rows.iterrows():
            reps = list(r.get("replicate_aucs", []) or [])
            if len(reps) > 1:
                x = r["size"] + 0.025 * span
                ax.scatter([x] * len(reps), reps, s=12, color=colour, alpha=0.55, zorder=3)
                ax.hlines(np.mean(reps), x - 0.012 * span, x + 0.012 * span, color=colour, lw=2)
    for ref, colour in zip(references, ["grey", "black", "purple"], strict=False):
        reps = list(ref.get("replicate_aucs", []) or [])
        label = f"{ref['label']}: {ref['auc']:.2f}"
        if len(reps) > 1:
            label += f" (replicates {np.mean(reps):.2f} ± {np.std(reps, ddof=1):.2f}, n={len(reps)})"
            ax.scatter([points["size"].min() - 0.04 * span] * len(reps), reps, s=12, color=colour, alpha=0.6)
        ax.axhline(ref["auc"], ls="--", color=colour, lw=1, label=label)
        ax.axhspan(ref["ci_low"], ref["ci_high"], color=colour, alpha=0.08)
    ax.set(
        xlabel="FDG PET pre-training subjects",
        ylabel="test ROC AUC (95 % CI; dots: replicates)",
        ylim=(0.0, 1.02),
        title="Sample-size study",
    )
    ax.set_xticks(sorted(points["size"].unique()))
    ax.legend(fontsize=7, loc="lower right")
    save(fig, path, dpi)


def mmse_scatter(panels: Sequence[tuple[str, pd.DataFrame, dict]], path: str | os.PathLike, dpi: int = 120) -> None:
    """Predicted vs true MMSE per model (train and test points), identity line; per split the paper's R² (squared
    Pearson r, bootstrap CI) with the Pearson p, the coefficient of determination and the MAE."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 5.6), squeeze=False)
    for ax, (title, pred, stats) in zip(axes[0], panels, strict=True):
        for split, marker, colour in (("train", "o", "#9ecae1"), ("test", "s", "#d62728")):
            rows = pred[(pred["split"] == split) & np.isfinite(pred["target"])]
            s = stats.get(split, {})
            label = f"{split} (n={len(rows)})"
            if s:
                label += (
                    f"\nR² (Pearson r², paper) {s['pearson_r2']:.2f}"
                    + (f" [{s['pearson_r2_ci'][0]:.2f}, {s['pearson_r2_ci'][1]:.2f}]" if "pearson_r2_ci" in s else "")
                    + f", p {s['p']:.1e}\ncoef. of determination {s['r2_determination']:.2f}, MAE {s['mae']:.1f}"
                )
            ax.scatter(rows["target"], rows["ensemble"], s=14, marker=marker, color=colour, alpha=0.8, label=label)
        ax.plot([0, 30], [0, 30], "k--", lw=1, label="identity")
        ax.set(xlim=(0, 31), ylim=(0, 31), xlabel="true MMSE", ylabel="predicted MMSE", title=title, aspect="equal")
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.14))  # below: the panel stays readable
    save(fig, path, dpi)


def tsne_figure(
    features: np.ndarray,
    diagnosis: np.ndarray,
    split: np.ndarray,
    path: str | os.PathLike,
    title: str,
    seed: int = 0,
    perplexity: float = 30.0,
    dpi: int = 120,
) -> None:
    """t-SNE of per-subject FC features, one embedding, drawn in a training and a test panel."""
    from sklearn.manifold import TSNE

    perplexity = float(min(perplexity, max(2.0, (len(features) - 1) / 3)))
    xy = TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(features)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharex=True, sharey=True)
    groups = [
        ("training + validation", np.isin(split, ["train", "val"])),
        ("test (and subjects not used in training)", ~np.isin(split, ["train", "val"])),
    ]
    for ax, (name, sel) in zip(axes, groups, strict=True):
        for dx, colour in DIAGNOSIS_COLOURS.items():
            m = sel & (diagnosis == dx)
            if m.any():
                ax.scatter(xy[m, 0], xy[m, 1], s=14, color=colour, label=f"{dx} (n={m.sum()})", alpha=0.85)
        ax.set(title=name, xlabel="t-SNE 1", ylabel="t-SNE 2")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    save(fig, path, dpi)


def learning_curves(histories: dict[str, pd.DataFrame], path: str | os.PathLike, dpi: int = 120) -> None:
    """Training and validation loss and metric per epoch, a row per model."""
    fig, axes = plt.subplots(len(histories), 2, figsize=(9, 2.3 * len(histories)), squeeze=False)
    for row, (name, h) in zip(axes, histories.items(), strict=True):
        metric = "auc" if "auc" in h.columns else "mae"
        for ax, key in zip(row, ["loss", metric], strict=True):
            ax.plot(h["epoch"] + 1, h[key], label=f"train {key}")
            if f"val_{key}" in h.columns:
                ax.plot(h["epoch"] + 1, h[f"val_{key}"], label=f"validation {key}")
            ax.set(xlabel="epoch", ylabel=key, title=name)
            ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path, dpi)


def overlay_rows(
    rows: Sequence[tuple[str, np.ndarray, np.ndarray | None]],
    path: str | os.PathLike,
    title: str,
    cmap: str = "jet",
    vmin: float | None = None,
    vmax: float | None = None,
    cbar_label: str = "",
    dpi: int = 120,
) -> None:
    """Rows of images (gray background, optional heat map on top), a row per (label, images, maps)."""
    n_cols = max(len(images) for _, images, _ in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.6 * n_cols, 2.6 * len(rows)), squeeze=False)
    mappable = None
    for ax_row, (label, images, maps) in zip(axes, rows, strict=True):
        for j, ax in enumerate(ax_row):
            ax.axis("off")
            if j >= len(images):
                continue
            ax.imshow(images[j], cmap="gray")
            if maps is not None:
                mappable = ax.imshow(maps[j], cmap=cmap, alpha=0.45, vmin=vmin, vmax=vmax)
            ax.set_title(" | ".join(filter(None, [label, f"set {j + 1}" if len(images) > 1 else ""])), fontsize=7)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=0.6, label=cbar_label)
    fig.suptitle(title, fontsize=9)
    save(fig, path, dpi)


def brain_map_figure(
    volume: np.ndarray,
    background: np.ndarray,
    path: str | os.PathLike,
    title: str,
    cmap: str = "jet",
    symmetric: bool = False,
    cbar_label: str = "",
    dpi: int = 120,
) -> None:
    """A map on the 95x95x48 crop over a background volume, as the three full-resolution mosaics."""
    size = volume.shape[0] * 4
    maps, bg = make_mosaics(volume, size), make_mosaics(background, size)
    lim = float(np.nanmax(np.abs(maps))) or 1.0
    vmin, vmax = (-lim, lim) if symmetric else (0.0, lim)
    masked = np.ma.masked_where(np.isclose(maps, 0.0), maps)
    overlay_rows(
        [("", list(bg), list(masked))], path, title, cmap=cmap, vmin=vmin, vmax=vmax, cbar_label=cbar_label, dpi=dpi
    )


def explanation_panels(
    panels: Sequence[tuple[str, np.ndarray]],
    background: np.ndarray,
    path: str | os.PathLike,
    title: str,
    dpi: int = 120,
) -> None:
    """Several maps on the 95x95x48 crop, a row each (the three full-resolution mosaics over `background`), each
    map's positive part scaled to its own maximum so that methods with different units read side by side."""
    size = background.shape[0] * 4
    bg = make_mosaics(background, size)
    fig, axes = plt.subplots(len(panels), 3, figsize=(9, 3.2 * len(panels)), squeeze=False)
    mappable = None
    for ax_row, (label, volume) in zip(axes, panels, strict=True):
        values = np.clip(np.nan_to_num(np.asarray(volume, np.float32), nan=0.0), 0, None)
        peak = float(values.max())
        maps = make_mosaics(values / peak if peak > 0 else values, size)
        for j, ax in enumerate(ax_row):
            ax.axis("off")
            ax.imshow(bg[j], cmap="gray")
            mappable = ax.imshow(np.ma.masked_where(maps[j] <= 1e-3, maps[j]), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_title(f"set {j + 1}", fontsize=7)
        ax_row[0].text(0, -0.12, label, transform=ax_row[0].transAxes, fontsize=9, va="bottom")
    fig.colorbar(mappable, ax=axes, shrink=0.6, label="each map / its maximum")
    fig.suptitle(title, fontsize=10)
    save(fig, path, dpi)
