"""Training one model: data -> model -> fit (Keras callbacks) -> evaluate on validation -> save.

One call trains one model of the grid (FDG pre-training at one size, an ECD fine-tune, the ECD scratch
baseline, or an MMSE regressor). Early stopping on validation loss restores the best weights; BackupAndRestore
lets a killed job resume from its last finished epoch; CSVLogger writes the history as it goes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from adtransfer.errors import InputError
from adtransfer.io import atomic_output, write_text

log = logging.getLogger("adtransfer")


@dataclass
class TrainSettings:
    task: str = "classify"  # classify | mmse
    init: str = "random"  # imagenet | random | path to weights (ignored when fine-tuning)
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 25
    patience: int = 8
    early_stopping_start: int = 0  # epochs before early stopping may act (BN statistics settle first)
    bn_momentum: float | None = 0.9
    augment_shift: float = 0.03
    augment_zoom: float = 0.03
    fc_units: int = 256
    intensity_range: tuple[float, float] = (0.0, 3.0)
    seed: int = 42
    threads: int = 2
    max_memory_gb: float = 4.0

    @classmethod
    def from_json(cls, text: str) -> TrainSettings:
        raw = json.loads(text)
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:  # a typo must not silently fall back to a default
            raise InputError(f"unknown training setting(s): {', '.join(unknown)}")
        if "intensity_range" in raw:
            raw["intensity_range"] = tuple(raw["intensity_range"])
        return cls(**raw)


def configure_tensorflow(seed: int, threads: int) -> None:
    """One seed for Python, NumPy and TensorFlow, deterministic ops, and the rule's thread budget."""
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran in this process (a second call, in tests): keep its threads
        log.debug("TensorFlow is initialized; thread settings unchanged")
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def seed_state_backup(path: str | os.PathLike):
    """A Keras callback keeping the layers' random-number states (dropout, augmentation) beside BackupAndRestore,
    which saves weights and optimizer but not these: a resumed run then draws what an uninterrupted one draws."""
    import keras

    path = Path(path)

    class SeedStateBackup(keras.callbacks.Callback):
        def _states(self):
            return [v for v in self.model.variables if "seed_generator_state" in v.path]

        def on_train_begin(self, logs=None):
            if path.exists():
                saved = np.load(path)
                for i, v in enumerate(self._states()):
                    v.assign(saved[f"s{i}"])

        def on_epoch_end(self, epoch, logs=None):
            with atomic_output(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **{f"s{i}": np.asarray(v) for i, v in enumerate(self._states())})

    return SeedStateBackup()


def train_model(
    cache: str,
    splits_path: str,
    set_column: str,
    out_dir: str | os.PathLike,
    settings: TrainSettings,
    pretrained: str | None = None,
) -> dict:
    """Train on rows `set_column == "train"`, validate on `== "val"`; write model.keras, history.tsv,
    metrics.json under out_dir and return the metrics."""
    from adtransfer.data import EpochCounter, make_dataset, select
    from adtransfer.splits import read_splits

    splits = read_splits(splits_path)
    if set_column not in splits.columns:
        raise InputError(f"{splits_path}: no split column {set_column!r} (have: {', '.join(splits.columns)})")
    train = select(cache, splits, set_column, "train", settings.task)
    val = select(cache, splits, set_column, "val", settings.task)
    if len(train.rows) == 0 or len(val.rows) == 0:
        raise InputError(
            f"{splits_path}: split {set_column} has {len(train.rows)} training and {len(val.rows)} "
            "validation subjects; both must be non-empty"
        )
    if settings.task == "classify" and len(set(train.targets.tolist())) < 2:
        raise InputError(f"{splits_path}: split {set_column} training set has a single class")

    configure_tensorflow(settings.seed, settings.threads)
    import keras

    from adtransfer import model as models

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if pretrained:
        net = models.from_pretrained(pretrained, settings.task, settings.fc_units, settings.seed)
        if settings.bn_momentum is not None:
            models.set_bn_momentum(net, settings.bn_momentum)
    else:
        backbone = models.build_backbone(
            train.size,
            settings.init,
            settings.augment_shift,
            settings.augment_zoom,
            settings.seed,
            settings.bn_momentum,
        )
        net = models.add_head(backbone, settings.task, settings.fc_units, settings.seed)
    models.compile_model(net, settings.task, settings.learning_rate)

    max_bytes = settings.max_memory_gb * 1e9
    epoch = EpochCounter()
    train_ds = make_dataset(
        train, settings.intensity_range, settings.batch_size, True, settings.seed, max_bytes, epoch=epoch
    )
    val_ds = make_dataset(val, settings.intensity_range, settings.batch_size, False, settings.seed, max_bytes)
    # work files beside the outputs: kept across a killed run (BackupAndRestore), removed after success
    work = out / "work"
    work.mkdir(exist_ok=True)
    callbacks = [
        epoch.callback(),  # before the others: the epoch's shuffle order is set when it begins
        keras.callbacks.BackupAndRestore(str(work / "backup")),
        seed_state_backup(work / "seed_states.npz"),
        keras.callbacks.ModelCheckpoint(str(work / "best.keras"), monitor="val_loss", save_best_only=True),
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=settings.patience,
            restore_best_weights=True,
            start_from_epoch=settings.early_stopping_start,
        ),
        keras.callbacks.CSVLogger(str(work / "history.tsv"), separator="\t", append=True),
    ]
    log.info(
        "training %s on %d subjects (%d mosaics), validating on %d subjects; %s",
        out,
        len(train.rows),
        train.n,
        len(val.rows),
        "fine-tuning " + pretrained if pretrained else f"init {settings.init}",
    )
    start = time.perf_counter()
    # shuffle=False: the dataset shuffles itself per (seed, epoch); Keras cannot shuffle a tf.data pipeline
    net.fit(train_ds, validation_data=val_ds, epochs=settings.epochs, callbacks=callbacks, verbose=2, shuffle=False)
    seconds = time.perf_counter() - start

    metrics = {
        "set": set_column,
        "n_train": int(len(train.rows)),
        "n_val": int(len(val.rows)),
        "seconds": round(seconds, 1),
        "pretrained": pretrained,
        "settings": asdict(settings),
    }
    metrics.update(validation_metrics(net, val, settings))
    history = (work / "history.tsv").read_text()
    metrics["epochs_run"] = max(0, len(history.strip().splitlines()) - 1)
    with atomic_output(out / "model.keras") as tmp:
        net.save(tmp)
    write_text(out / "history.tsv", history)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return metrics


def validation_metrics(net, val, settings: TrainSettings) -> dict:
    """Validation metrics of the restored (best) weights: per mosaic and as the paper's 3-mosaic ensemble."""
    from sklearn.metrics import mean_absolute_error, roc_auc_score

    from adtransfer.data import load_mosaics

    x = load_mosaics(val, settings.intensity_range)
    pred = net.predict(x, batch_size=settings.batch_size, verbose=0)
    if settings.task == "classify":
        p = pred[:, 1].reshape(-1, val.n_sets)
        y = val.targets
        single = len(set(y.tolist())) < 2
        return {
            "val_auc_mosaic": None if single else float(roc_auc_score(val.sample_targets(), p.reshape(-1))),
            "val_auc_ensemble": None if single else float(roc_auc_score(y, p.mean(axis=1))),
            "val_accuracy_ensemble": float(np.mean((p.mean(axis=1) >= 0.5) == y)),
        }
    p = np.asarray(pred).reshape(-1, val.n_sets).mean(axis=1)
    return {"val_mae_ensemble": float(mean_absolute_error(val.targets, p))}
