"""Training one model: data -> model -> fit (Keras callbacks) -> evaluate on validation -> save.

One call trains one model of the grid (FDG pre-training at one size, an ECD fine-tune, the ECD scratch
baseline, or an MMSE regressor). Early stopping on validation loss restores the best weights; BackupAndRestore
lets a killed job resume from its last finished epoch; CSVLogger writes the history as it goes.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
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
    fc_units: int | None = None  # None: the cache modality's (adtransfer.modalities)
    intensity_range: tuple[float, float] | None = None  # None: the cache modality's
    seed: int = 42
    threads: int = 2
    max_memory_gb: float = 4.0

    @classmethod
    def from_json(cls, text: str) -> TrainSettings:
        raw = json.loads(text)
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:  # a typo must not silently fall back to a default
            raise InputError(f"unknown training setting(s): {', '.join(unknown)}")
        if raw.get("intensity_range") is not None:
            raw["intensity_range"] = tuple(raw["intensity_range"])
        return cls(**raw)

    def for_modality(self, modality: str) -> None:
        """Fill what the settings leave open from the modality registry (head width, intensity mapping), so a
        hand-run job on an ECD cache never trains with FDG's mapping."""
        from adtransfer import modalities

        if self.fc_units is None:
            self.fc_units = modalities.fc_units(modality)
        if self.intensity_range is None:
            self.intensity_range = tuple(modalities.intensity_range(modality))


# Grappler, TensorFlow's graph optimizer, rewrites each traced function once per process. On this project's CPU
# machines that cost a training job ~4.5 CPU s of its ~25 s start-up and made no step faster (bench/train_step.py,
# variant `grappler`: same CPU seconds per training step at the demo's size), so it is off where there is no GPU,
# as Keras leaves XLA off there. On a GPU its layout and fusion passes pay: it stays on.
GRAPPLER_ON_CPU = False


def configure_tensorflow(seed: int, threads: int) -> None:
    """One seed for Python, NumPy and TensorFlow, deterministic ops, the rule's thread budget, and on a machine
    without a GPU no graph optimizer (`GRAPPLER_ON_CPU`)."""
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran in this process (a second call, in tests): keep its threads
        log.debug("TensorFlow is initialized; thread settings unchanged")
    if not GRAPPLER_ON_CPU and not tf.config.list_physical_devices("GPU"):
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


# --- exact resume --------------------------------------------------------------------------------------
# A killed job rerun resumes from the last epoch Keras' BackupAndRestore committed (weights, optimizer, epoch).
# It commits at most every `backup_every` seconds (and always the last epoch): the backup holds the weights and
# the optimizer state (~270 MB at the demo's size, ~1.5 s a commit, a quarter of a demo fine-tune's epoch), and a
# killed job redoes the training since the last commit: about a minute plus an epoch at most. The files below are
# kept for a resume from the last commit and from the one under way (the current epoch's).
# That committed epoch count is the single source of truth: prepare_resume settles it (settle_backup) and cuts
# every other work file back to it. The rest of the training state is rebuilt from files written at each epoch's
# end *before* that commit (BackupAndRestore is the last callback, so a kill between them only makes the job redo
# that epoch):
#   history.tsv (CSVLogger)          -> EarlyStopping's best / wait / best_epoch
#   early_stopping/best_NNNN.npz     -> EarlyStopping's best weights (of the committed epochs, and the current best)
#   seed_states/states_NNNN.npz      -> the layers' random-number states (dropout, augmentation) at epoch NNNN
#
# BackupAndRestore(double_checkpoint=True) commits epoch e+1 in four steps, in backup/:
#   1. latest.weights.h5 -> latest.weights.h5.bkp          (copy: the previous pair)
#   2. training_metadata.json -> training_metadata.json.bkp
#   3. latest.weights.h5 <- the weights after epoch e         (written in place)
#   4. training_metadata.json <- {"epoch": e + 1}            (written in place)
# A kill during 4 leaves a truncated training_metadata.json (Keras itself then fails with a JSONDecodeError); a
# kill between 2 and 4 leaves weights newer than the metadata (Keras would retrain epoch e from the weights after
# it). Both show in the metadata: unreadable, or equal to its .bkp copy. settle_backup then puts the previous pair
# back (it is complete: steps 1-2 finished), or, without one (the first epoch), discards the backup.

BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_METADATA = "training_metadata.json"
BACKUP_EVERY_S = 60.0  # default of `adtransfer train --backup-every`


@dataclass
class Commits:
    """The epoch count BackupAndRestore last committed in this run: the callbacks that write per-epoch work files
    keep those a resume from that commit needs (a kill inside the next commit falls back to it: settle_backup), and
    those of the current epoch (its commit may complete)."""

    epochs: int = 0


def _epoch_of(meta: Path) -> int | None:
    """The epoch a BackupAndRestore metadata file records; None when it is missing or unreadable."""
    try:
        return int(json.loads(meta.read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _readable_weights(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r"):
            return True
    except Exception:  # h5py raises OSError for a truncated file, other types for other damage
        return False


def _copy(src: Path, dst: Path) -> None:
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)


def _discarded(folder: Path) -> Path:
    """Where discard_folder moves `folder` before removing it."""
    return folder.with_name(f".{folder.name}.discarded")


def remove_discarded(folder: Path) -> None:
    """Finish a discard_folder of `folder` that a kill interrupted."""
    shutil.rmtree(_discarded(folder), ignore_errors=True)


def discard_folder(folder: Path) -> None:
    """Remove a folder at once: renamed first, so that a kill during the removal leaves no partial folder (a
    backup missing some files, a work folder without its mark), only `.<name>.discarded`, removed the next time."""
    doomed = _discarded(folder)
    remove_discarded(folder)
    if not folder.exists():
        return
    if doomed.exists():  # a leftover that cannot be removed (e.g. a file held open on NFS): remove in place
        shutil.rmtree(folder, ignore_errors=True)
        return
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def settle_backup(backup_dir: str | os.PathLike) -> int:
    """Leave the backup folder holding one consistent (weights, epoch) pair for BackupAndRestore to load, and
    return its epoch count: the epochs committed. 0 without a backup, or after discarding one no pair of which
    is consistent (logged)."""
    backup = Path(backup_dir)
    remove_discarded(backup)
    if not backup.is_dir():
        return 0
    for leftover in backup.glob(".*.tmp*"):  # a copy below that a kill interrupted
        leftover.unlink()
    weights, meta = backup / BACKUP_WEIGHTS, backup / BACKUP_METADATA
    prev_weights, prev_meta = backup / f"{BACKUP_WEIGHTS}.bkp", backup / f"{BACKUP_METADATA}.bkp"
    current, previous = _epoch_of(meta), _epoch_of(prev_meta)
    if current is not None and current != previous and _readable_weights(weights):
        return current
    if previous is not None and _readable_weights(prev_weights):
        why = (
            "the weights may be newer than the metadata (killed between the two writes)"
            if current == previous
            else f"{meta.name} is unreadable (killed while it was written)"
            if current is None
            else f"{weights.name} is unreadable"
        )
        log.warning("backup in %s: %s; resuming from its previous checkpoint, epoch %d", backup, why, previous)
        _copy(prev_weights, weights)
        _copy(prev_meta, meta)
        prev_meta.unlink()  # the pair is now the current one; the next commit makes a new .bkp
        prev_weights.unlink()
        return previous
    if any(backup.iterdir()):
        log.warning("backup in %s holds no complete checkpoint; discarding it and restarting from epoch 0", backup)
    discard_folder(backup)
    return 0


def _epoch_files(folder: Path) -> dict[int, Path]:
    """{epoch: file} of a folder of `<name>_NNNN.npz` files (temporary files of a killed write are not among them)."""
    found = (re.fullmatch(r"[a-z]+_(\d{4})\.npz", p.name) for p in folder.iterdir()) if folder.is_dir() else ()
    return {int(m.group(1)): folder / m.group(0) for m in found if m}


def read_history(path: str | os.PathLike) -> list[dict[str, str]]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _cut_work_files(work: Path, done: int) -> str | None:
    """Drop history rows, best weights and seed states of epochs after the `done` committed ones; return what is
    missing for an exact resume from there (None when nothing is)."""
    history = work / "history.tsv"
    if history.exists():
        lines = history.read_text().splitlines(keepends=True)
        if lines and not lines[-1].endswith(("\n", "\r")):  # a row the kill cut short ("1" of epoch 12's "12\t...")
            lines.pop()
        rows = read_history(history) if done else []
        kept = [
            line
            for line, row in zip(lines[1:], rows, strict=False)
            if (row.get("epoch") or "").isdigit() and int(row["epoch"]) < done
        ]
        if kept:
            write_text(history, "".join(lines[:1] + kept))
        else:
            history.unlink()
    for folder, first_stale in ((work / "early_stopping", done), (work / "seed_states", done + 1)):
        for epoch, path in _epoch_files(folder).items():
            if epoch >= first_stale:
                path.unlink()
        for leftover in folder.glob(".*.tmp*"):  # a write the kill interrupted
            leftover.unlink()
    if done == 0:
        return None
    epochs = [int(row["epoch"]) for row in read_history(history)]
    if epochs != list(range(done)):
        return f"history.tsv has epochs {epochs}"
    if not (work / "seed_states" / f"states_{done:04d}.npz").exists():
        return f"seed_states/states_{done:04d}.npz is missing"
    return None


def prepare_resume(work: Path) -> int:
    """Settle the backup to the epochs BackupAndRestore committed, cut every other work file back to them, and
    return that number of epochs.

    Rows, best weights and seed states of a later epoch come from an epoch the job will redo (or from a run whose
    backup is gone: a kill after training finished), so they are dropped. A work folder that lacks a committed
    epoch's files (never left by a kill) is discarded: the job restarts from epoch 0, as an uninterrupted run."""
    done = settle_backup(work / "backup")
    missing = _cut_work_files(work, done)
    if missing:
        log.warning(
            "work folder %s does not match its %d committed epochs (%s); restarting from epoch 0", work, done, missing
        )
        discard_folder(work / "backup")
        _cut_work_files(work, 0)
        return 0
    return done


def _save_npz(path: Path, arrays: list) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, *[np.asarray(a) for a in arrays])


def _load_npz(path: Path) -> list[np.ndarray]:
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def seed_state_backup(folder: str | os.PathLike, commits: Commits):
    """A Keras callback keeping the layers' random-number states (dropout, augmentation), which BackupAndRestore
    does not save: one file per epoch boundary (kept: the last committed one and the current one), restored when the
    first (resumed) epoch begins."""
    import keras

    folder = Path(folder)

    class SeedStateBackup(keras.callbacks.Callback):
        restored = False

        def _states(self):
            return [v for v in self.model.variables if "seed_generator_state" in v.path]

        def on_epoch_begin(self, epoch, logs=None):
            if not self.restored:  # after BackupAndRestore has loaded the weights (on_train_begin)
                self.restored = True
                path = folder / f"states_{epoch:04d}.npz"
                if path.exists():
                    for v, value in zip(self._states(), _load_npz(path), strict=True):
                        v.assign(value)

        def on_epoch_end(self, epoch, logs=None):
            _save_npz(folder / f"states_{epoch + 1:04d}.npz", self._states())
            for old, path in _epoch_files(folder).items():
                if old not in (commits.epochs, epoch + 1):  # a resume from the last commit or the next one
                    path.unlink()

    return SeedStateBackup()


def resumable_early_stopping(history: str | os.PathLike, folder: str | os.PathLike, commits: Commits, **kwargs):
    """Keras' EarlyStopping whose state survives a kill: on train begin, Keras' own logic is replayed over the
    committed history (best, wait, best_epoch, stopped_epoch), and the best weights are read back from the file
    written when that epoch was the best (kept while it is the best of the committed epochs or the current best)."""
    import keras

    history, folder = Path(history), Path(folder)

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            self.replay()

        def replay(self) -> None:
            """Rebuild the state an uninterrupted run holds after the epochs in the history file."""
            super().on_train_begin()
            self.best_after = {}  # epoch -> the best epoch once it had run
            restore, self.restore_best_weights = self.restore_best_weights, False
            stop = bool(getattr(self.model, "stop_training", False))
            try:
                for row in read_history(history):
                    value = row.get(self.monitor, "")
                    logs = {self.monitor: float(value)} if value not in ("", "NA") else {}
                    super().on_epoch_end(int(row["epoch"]), logs)
                    self.best_after[int(row["epoch"])] = self.best_epoch
            finally:
                self.restore_best_weights = restore
                self.model.stop_training = stop
            if restore and self.best is not None:
                path = folder / f"best_{self.best_epoch:04d}.npz"
                if not path.exists():
                    raise InputError(f"{path} is missing: cannot resume exactly; delete {folder.parent} to restart")
                self.best_weights = _load_npz(path)

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            self.best_after[epoch] = self.best_epoch
            if self.restore_best_weights and self.best_weights is not None and self.best_epoch == epoch:
                _save_npz(folder / f"best_{epoch:04d}.npz", self.best_weights)
            # a resume from the last commit needs the best of the committed epochs; one from the next commit (this
            # epoch's, under way) the current best
            keep = {self.best_after.get(commits.epochs - 1), self.best_epoch}
            for old, path in _epoch_files(folder).items():
                if old not in keep:
                    path.unlink()

    return ResumableEarlyStopping(**kwargs)


def periodic_backup(backup_dir: str | os.PathLike, commits: Commits, every_seconds: float, clock=time.monotonic):
    """Keras' BackupAndRestore (double checkpoint, kept after fit: a job killed while it writes its outputs or
    predicts resumes with no epoch left to train) committing an epoch when `every_seconds` have passed since the
    run began or last committed, and always the last epoch (the epochs asked for, or early stopping's)."""
    import keras

    class PeriodicBackupAndRestore(keras.callbacks.BackupAndRestore):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self.last_commit = clock()

        def on_epoch_end(self, epoch, logs=None):
            last = epoch + 1 >= self.params["epochs"] or self.model.stop_training
            if last or clock() - self.last_commit >= every_seconds:
                super().on_epoch_end(epoch, logs)
                self.last_commit = clock()
                commits.epochs = epoch + 1

    return PeriodicBackupAndRestore(str(backup_dir), double_checkpoint=True, delete_checkpoint=False)


def resumable_callbacks(
    net, work: Path, *, patience: int, early_stopping_start: int, backup_every: float, clock=time.monotonic
):
    """Settle the work folder (prepare_resume) and return the callbacks of an exactly resumable fit of `net`, in
    their order (seed states, early stopping on val_loss restoring the best weights, the history, the backup last:
    it commits an epoch after the others have written that epoch's state), the early stopping callback (its state
    replayed: a job killed after early stopping had decided trains no further epoch) and the committed epochs."""
    import keras

    done = prepare_resume(work)
    commits = Commits(done)
    stopping = resumable_early_stopping(
        work / "history.tsv",
        work / "early_stopping",
        commits,
        monitor="val_loss",
        patience=patience,
        restore_best_weights=True,
        start_from_epoch=early_stopping_start,
    )
    stopping.set_model(net)
    stopping.replay()
    callbacks = [
        seed_state_backup(work / "seed_states", commits),
        stopping,
        keras.callbacks.CSVLogger(str(work / "history.tsv"), separator="\t", append=True),
        periodic_backup(work / "backup", commits, backup_every, clock),
    ]
    return callbacks, stopping, done


WORK_MARK = ".adtransfer-train-work"  # marks a folder train_model made (and may therefore delete)


def job_fingerprint(
    settings: TrainSettings, set_column: str, splits_path: str, cache: str, pretrained: str | None, model_out: Path
) -> str:
    """What makes a training job this job: its settings (threads aside), split column and split file, its cache and
    parent model (size and modification time), its output. A work folder left by another job is not resumed."""

    def stamp(path: str | None) -> list | None:  # (a missing input fails later, with its own message)
        return [os.path.getsize(path), os.stat(path).st_mtime_ns] if path and os.path.exists(path) else None

    from adtransfer.io import sha256_file

    return json.dumps(
        {
            "settings": {k: v for k, v in asdict(settings).items() if k != "threads"},
            "set": set_column,
            "splits": sha256_file(splits_path) if os.path.exists(splits_path) else None,
            "cache": stamp(cache),
            "pretrained": stamp(pretrained),
            "model_out": str(model_out.resolve()),
        },
        sort_keys=True,
        default=str,
    )


def claim_work_dir(work: Path, outputs: list[Path], fingerprint: str = "") -> None:
    """Create the work folder, or take back the one a killed run of this same job left (same fingerprint); a folder
    a different job left (settings, splits, cache or parent changed since the kill) is emptied and started over.
    Refuse a folder that holds anything else (it is deleted after success) or one that holds an output."""
    if work.name in ("", ".", ".."):  # it is renamed and removed after training: never the current folder
        raise InputError(f"work folder {work}: give a folder of its own, e.g. <model folder>/work")
    root = work.resolve()
    for output in outputs:
        if output.resolve() == root or root in output.resolve().parents:
            raise InputError(f"{output} lies in the work folder {work}, which is deleted after training")
    if work.exists() and not work.is_dir():
        raise InputError(f"work folder {work} is a file")
    remove_discarded(work)
    mark = work / WORK_MARK
    if work.is_dir() and any(work.iterdir()) and not mark.exists():
        raise InputError(f"work folder {work} is not empty and was not made by a training run: refusing to use it")
    if mark.exists() and mark.read_text() != fingerprint:
        log.warning("%s: left by a different training job (its inputs or settings changed): starting over", work)
        discard_folder(work)
    work.mkdir(parents=True, exist_ok=True)
    write_text(mark, fingerprint)


def train_model(
    cache: str,
    splits_path: str,
    set_column: str,
    settings: TrainSettings,
    *,
    model_out: str | os.PathLike,
    history_out: str | os.PathLike,
    metrics_out: str | os.PathLike,
    work_dir: str | os.PathLike,
    pretrained: str | None = None,
    predictions_out: str | os.PathLike | None = None,
    features_out: str | os.PathLike | None = None,
    backup_every: float = BACKUP_EVERY_S,
) -> dict:
    """Train on rows `set_column == "train"`, validate on `== "val"`; write the model (.keras), the history (TSV)
    and the metrics (JSON) to the given files and return the metrics.

    With predictions_out and features_out (both or neither), the job then also writes what `predict-cohort` writes
    for the saved model (every subject of the cache: learning.predict.predict_cohort with the network still in
    memory), so the workflow pays TensorFlow's start-up and the cache read once per CNN instead of twice.

    work_dir keeps the resume state across a killed run (see prepare_resume), committed at most every
    `backup_every` seconds (0: after every epoch); it is removed after success."""
    import h5py

    from adtransfer.learning.data import EpochCounter, make_dataset, select
    from adtransfer.learning.splits import read_splits

    if os.path.exists(cache):  # (a missing cache fails below with the data loader's message)
        try:
            with h5py.File(cache, "r") as h5:
                settings.for_modality(str(h5.attrs["modality"]))
        except (OSError, KeyError) as exc:
            raise InputError(f"{cache}: not a readable adtransfer cache ({exc})") from None
    if (predictions_out is None) != (features_out is None):
        raise InputError("--predictions-out and --features-out go together: give both or neither")
    outputs = [Path(model_out), Path(history_out), Path(metrics_out)]
    outputs += [Path(p) for p in (predictions_out, features_out) if p is not None]
    work = Path(work_dir)
    claim_work_dir(work, outputs, job_fingerprint(settings, set_column, splits_path, cache, pretrained, outputs[0]))
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

    from adtransfer.learning import model as models

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
    models.build_training_state(net, train_ds.element_spec)
    # work files: kept across a killed run, removed after success
    resume, stopping, done = resumable_callbacks(
        net,
        work,
        patience=settings.patience,
        early_stopping_start=settings.early_stopping_start,
        backup_every=backup_every,
    )
    epochs = done if stopping.stopped_epoch else settings.epochs
    # the epoch counter first: the epoch's shuffle order is set when it begins
    callbacks = [epoch.callback(), *resume]
    log.info(
        "training %s on %d subjects (%d mosaics), validating on %d subjects; %s",
        model_out,
        len(train.rows),
        train.n,
        len(val.rows),
        "fine-tuning " + pretrained if pretrained else f"init {settings.init}",
    )
    start = time.perf_counter()
    if done:
        log.info("resuming after %d committed epochs (best so far: epoch %d)", done, stopping.best_epoch)
    # shuffle=False: the dataset shuffles itself per (seed, epoch); Keras cannot shuffle a tf.data pipeline
    net.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=2, shuffle=False)
    seconds = time.perf_counter() - start

    metrics = {
        "set": set_column,
        "n_train": int(len(train.rows)),
        "n_val": int(len(val.rows)),
        "seconds": round(seconds, 1),
        "pretrained": pretrained,
        "best_epoch": int(stopping.best_epoch),  # 0-based, as history.tsv's epoch column
        "stopped_epoch": int(stopping.stopped_epoch) or None,
        "settings": asdict(settings),
    }
    from adtransfer.learning.predict import TrainedModel, feature_probe, predict_cohort

    # one model (and one traced predict function) for the validation metrics and the cohort's predictions
    probe = feature_probe(net)
    metrics.update(validation_metrics(probe, val, settings))
    history = (work / "history.tsv").read_text()
    metrics["epochs_run"] = max(0, len(history.strip().splitlines()) - 1)
    with atomic_output(model_out) as tmp:
        net.save(tmp)
    write_text(history_out, history)
    write_text(metrics_out, json.dumps(metrics, indent=2, default=str) + "\n")
    if predictions_out is not None:
        # what `predict-cohort` computes from the files just written (tested to give the same numbers), with the
        # network in memory: no reload, no second trace (post-fit 12 -> 7 s in a demo fine-tune). The training data
        # go first.
        del train_ds, val_ds, train, val, callbacks, resume, stopping
        trained = TrainedModel(model_out, metrics_out, cache, splits_path, set_column)
        predict_cohort(trained, predictions_out, features_out, probe=probe)
    try:
        discard_folder(work)
    except OSError as exc:  # the outputs are complete: a work folder left behind must not fail the job
        log.warning("could not remove the work folder %s (%s); remove it by hand", work, exc)
    return metrics


def validation_metrics(probe, val, settings: TrainSettings) -> dict:
    """Validation metrics of the restored (best) weights (`probe`: predict.feature_probe of the network): per mosaic
    and as the paper's 3-mosaic ensemble."""
    from sklearn.metrics import mean_absolute_error, roc_auc_score

    from adtransfer.learning.data import load_mosaics

    x = load_mosaics(val, settings.intensity_range)
    pred = np.asarray(probe.predict(x, batch_size=settings.batch_size, verbose=0)[0])
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
