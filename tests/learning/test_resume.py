"""Resume after a kill: a training job SIGKILLed during training, inside BackupAndRestore's commit or while it
writes its outputs, then rerun, gives the uninterrupted run's history, metrics and weights (slow;
test_kill_while_predicting_resumes_without_training is also the determinism check: same settings, same results);
the resume logic on crafted work folders and against Keras' BackupAndRestore with a tiny dense model (fast).

The kill tests share one uninterrupted run and one killed run, whose work folder each of them restores before its
own rerun. (A file of its own, beside test_train.py, so that pytest-xdist's workers can run the two at once.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from train_helpers import SETTINGS, predictions_of, train_cmd

# Chosen (measured on the tiny cohort) so that the best validation loss comes early and early stopping acts later:
# the kill falls after the best epoch and before the stop, where a restarted EarlyStopping would forget both.
RESUME = {**SETTINGS, "epochs": 8, "patience": 2, "early_stopping_start": 0}


def resume_cmd(tiny_cache, out: Path, **kwargs) -> list[str]:
    """A RESUME job whose backup commits after every epoch (the kills below wait for given commits)."""
    return train_cmd(tiny_cache, out, settings=RESUME, backup_every=0, **kwargs)


def _weights(path: Path) -> list:
    import keras

    return keras.saving.load_model(path, compile=False).get_weights()


def _kill_when(cmd: list[str], ready, timeout: float = 600) -> None:
    """Start a training job, SIGKILL it as soon as ready() holds."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _committed(meta: Path) -> int:
    """The epoch count a BackupAndRestore metadata file records (-1 while missing or half written)."""
    try:
        return int(json.loads(meta.read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return -1


@pytest.fixture(scope="module")
def straight(tiny_cache, tmp_path_factory) -> dict:
    """The uninterrupted RESUME run that every kill test must reproduce, and the test's premise checked on it. With
    the default backup schedule (it is killed nowhere: a commit at most once a minute, and of the last epoch; the
    killed runs commit every epoch, so their match also shows that the schedule changes no result)."""
    out = tmp_path_factory.mktemp("straight") / "straight"
    done = subprocess.run(train_cmd(tiny_cache, out, settings=RESUME), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = pd.read_csv(out / "history.tsv", sep="\t")
    best, stopped = int(expected["val_loss"].idxmin()), len(expected) - 1
    # the premise: early stopping acted (patience epochs after the best one), and the kill point (the best epoch
    # and one without improvement finished) lies between the best epoch and the stop
    kill_after = best + 2
    trajectory = expected[["epoch", "val_loss"]].to_string()
    assert stopped < RESUME["epochs"] - 1 and stopped == best + RESUME["patience"] >= kill_after, trajectory
    return {
        "out": out,
        "history": expected,
        "metrics": json.loads((out / "metrics.json").read_text()),
        "best": best,
        "stopped": stopped,
        "kill_after": kill_after,
        "trajectory": trajectory,
    }


@pytest.fixture(scope="module")
def killed(tiny_cache, straight, tmp_path_factory) -> dict:
    """One RESUME job SIGKILLed once BackupAndRestore has committed `kill_after` epochs (>= 2: its double checkpoint
    then holds a previous pair too), i.e. after the best epoch and before early stopping acts. What the kill left
    is kept aside: every kill test puts it back in place (a work folder is claimed by its job's output path)
    before rerunning the job."""
    root = tmp_path_factory.mktemp("killed")
    out = root / "resume"
    cmd = resume_cmd(tiny_cache, out)
    backup = out / "work" / "backup"
    meta, prev_meta = backup / "training_metadata.json", backup / "training_metadata.json.bkp"
    history = out / "work" / "history.tsv"
    kill_after = straight["kill_after"]

    def ready() -> bool:
        rows = len(history.read_text().strip().splitlines()) - 1 if history.exists() else 0
        return rows >= kill_after and _committed(meta) >= max(kill_after, 2) and _committed(prev_meta) >= 1

    _kill_when(cmd, ready)
    left = sorted(p.name for p in out.iterdir())
    shutil.copytree(out, root / "as_killed", symlinks=True)
    return {"cmd": cmd, "out": out, "as_killed": root / "as_killed", "left": left, "kill_after": kill_after}


def _restore(killed: dict) -> Path:
    """The killed job's folder as the kill left it; returns its work/backup folder."""
    shutil.rmtree(killed["out"], ignore_errors=True)
    shutil.copytree(killed["as_killed"], killed["out"], symlinks=True)
    return killed["out"] / "work" / "backup"


@pytest.mark.slow
def test_killed_run_resumes_exactly(killed, straight):
    """A job killed after its best epoch and before early stopping acts, then rerun, gives the uninterrupted run's
    history, metrics (timings apart) and final weights: EarlyStopping's best, wait counter and best weights are
    rebuilt on resume. The kill leaves no half-written output."""
    # nothing half-written: no output, no temporary file beside the outputs; only the work folder
    assert killed["left"] == ["work"]
    _restore(killed)
    out, kill_after = killed["out"], killed["kill_after"]
    done = subprocess.run(killed["cmd"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    epochs_shown = [int(m) for m in re.findall(r"Epoch (\d+)/8", done.stdout + done.stderr)]
    assert epochs_shown and min(epochs_shown) > kill_after - 1, epochs_shown  # resumed, not restarted

    final = pd.read_csv(out / "history.tsv", sep="\t")
    pd.testing.assert_frame_equal(final, straight["history"], rtol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    expected_metrics = dict(straight["metrics"])
    for m in (metrics, expected_metrics):
        m.pop("seconds")
    assert metrics.keys() == expected_metrics.keys()
    for key, value in expected_metrics.items():
        assert metrics[key] == (pytest.approx(value, rel=1e-5) if isinstance(value, float) else value), key
    trajectory = straight["trajectory"]
    assert metrics["best_epoch"] == straight["best"] and metrics["stopped_epoch"] == straight["stopped"], trajectory
    for a, b in zip(_weights(out / "model.keras"), _weights(straight["out"] / "model.keras"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not (out / "work").exists()


@pytest.mark.slow
def test_kill_while_predicting_resumes_without_training(tiny_cache, straight, tmp_path):
    """A job killed after training, while it writes its outputs and the cohort's predictions, rerun (Snakemake first
    removes the outputs it left): the backup outlived fit, so the job trains no epoch again and gives the
    uninterrupted run's history, metrics (timings apart) and weights, and its predictions. With the default backup
    schedule (a commit a minute, and of the last epoch): the commit of early stopping's last epoch is what lets the
    rerun train nothing.

    Also the suite's determinism check: the killed job trained uninterrupted in a process of its own, as the
    reference did, so the same settings gave the same history, metrics and weights twice."""
    out = tmp_path / "resume"
    cmd = train_cmd(tiny_cache, out, settings=RESUME, predictions=True)
    table, features = predictions_of(out)
    _kill_when(cmd, lambda: (out / "model.keras").exists())
    assert not table.exists() and not features.exists()  # killed before the predictions were written
    for name in ("model.keras", "history.tsv", "metrics.json"):
        (out / name).unlink(missing_ok=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not re.findall(r"Epoch \d+/8", done.stdout + done.stderr), "trained again"
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.tsv", sep="\t"), straight["history"], rtol=1e-5)
    metrics, expected = (json.loads(p.read_text()) for p in (out / "metrics.json", straight["out"] / "metrics.json"))
    for m in (metrics, expected):
        m.pop("seconds")
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == (pytest.approx(value, rel=1e-5) if isinstance(value, float) else value), key
    for key in ("val_auc_ensemble", "val_auc_mosaic", "val_accuracy_ensemble"):  # determinism: to the bit
        assert metrics[key] == expected[key], (key, metrics[key], expected[key])
    for a, b in zip(_weights(out / "model.keras"), _weights(straight["out"] / "model.keras"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert len(pd.read_csv(table, sep="\t")) > 0 and features.exists() and not (out / "work").exists()


# --- a kill inside BackupAndRestore's own commit -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated_metadata", "weights_newer_than_metadata"])
def test_kill_inside_backup_commit_resumes_exactly(killed, straight, damage):
    """A kill while BackupAndRestore wrote training_metadata.json (half of it written), or between its weights and
    its metadata (the weights of the next epoch beside the previous epoch's metadata), then a rerun: the job
    completes without a traceback and gives the uninterrupted run's history and weights."""
    backup = _restore(killed)
    meta, prev_meta = backup / "training_metadata.json", backup / "training_metadata.json.bkp"
    # BackupAndRestore's commit of epoch count e + 1 copies the (weights, metadata) pair to .bkp, then writes the
    # weights, then the metadata: the killed run's consistent state (e + 1, with e in .bkp) becomes the kill inside
    # that commit by rewriting the metadata alone
    text = meta.read_text()
    meta.write_text(text[: len(text) // 2] if damage == "truncated_metadata" else prev_meta.read_text())
    out = killed["out"]
    done = subprocess.run(killed["cmd"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert "previous checkpoint" in done.stdout + done.stderr
    # resumed from that checkpoint: its seed states and best weights were kept (a restart would also match)
    assert "restarting from epoch 0" not in done.stdout + done.stderr
    assert min(int(m) for m in re.findall(r"Epoch (\d+)/8", done.stdout + done.stderr)) > 1
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.tsv", sep="\t"), straight["history"], rtol=1e-5)
    for a, b in zip(_weights(out / "model.keras"), _weights(straight["out"] / "model.keras"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not (out / "work").exists()


# --- the resume logic, fast: crafted work folders ----------------------------------------------------------


def _h5(path: Path, value: float) -> None:
    import h5py

    with h5py.File(path, "w") as fh:
        fh["w"] = np.full(3, value)


def _h5_value(path: Path) -> float:
    import h5py

    with h5py.File(path, "r") as fh:
        return float(fh["w"][0])


def crafted_work(root: Path, c: int, damage: str) -> Path:
    """The work folder of a run killed after epoch index c ran, while BackupAndRestore committed c + 1 epochs:
    history rows 0..c, seed states c (if c > 0) and c + 1, best weights of epochs c - 1 and c; weights files hold
    their epoch count. damage: "none" (killed before the commit), "truncated_metadata" (during its metadata write),
    "weights_newer_than_metadata" (between its weights and metadata writes)."""
    work = root / "work"
    backup = work / "backup"
    for folder in (backup, work / "seed_states", work / "early_stopping"):
        folder.mkdir(parents=True)
    rows = "".join(f"{e}\t{1.0 - e / 10}\t{1.0 - e / 20}\n" for e in range(c + 1))
    (work / "history.tsv").write_text("epoch\tloss\tval_loss\n" + rows)
    for e in (c, c + 1):
        if e >= 1:  # written at the end of epoch index e - 1
            np.savez(work / "seed_states" / f"states_{e:04d}.npz", np.array([e]))
    for e in (c - 1, c):
        if e >= 0:
            np.savez(work / "early_stopping" / f"best_{e:04d}.npz", np.array([e]))
    meta = backup / "training_metadata.json"
    if damage == "none":
        _h5(backup / "latest.weights.h5", c)
        meta.write_text(json.dumps({"epoch": c, "batch": 0}))
        if c:
            _h5(backup / "latest.weights.h5.bkp", c - 1)
            (backup / "training_metadata.json.bkp").write_text(json.dumps({"epoch": c - 1, "batch": 0}))
        return work
    if c:  # steps 1-2 of the commit: the pair of c epochs becomes the previous one
        _h5(backup / "latest.weights.h5.bkp", c)
        (backup / "training_metadata.json.bkp").write_text(json.dumps({"epoch": c, "batch": 0}))
    _h5(backup / "latest.weights.h5", c + 1)  # step 3
    if damage == "truncated_metadata":  # step 4, half written
        text = json.dumps({"epoch": c + 1, "batch": 0})
        meta.write_text(text[: len(text) // 2])
    elif c:  # step 4 not begun: the metadata of c epochs
        meta.write_text(json.dumps({"epoch": c, "batch": 0}))
    return work


def _state(work: Path) -> dict:
    from adtransfer.learning.train import read_history

    backup = work / "backup"
    return {
        "history": [int(r["epoch"]) for r in read_history(work / "history.tsv")],
        "seed_states": sorted(p.name for p in (work / "seed_states").iterdir()),
        "early_stopping": sorted(p.name for p in (work / "early_stopping").iterdir()),
        "backup": sorted(p.name for p in backup.iterdir()) if backup.exists() else None,
    }


@pytest.mark.parametrize("damage", ["none", "truncated_metadata", "weights_newer_than_metadata"])
def test_resume_state_is_cut_to_the_committed_epochs(tmp_path, damage, caplog):
    """Every work file agrees with the (settled) committed epoch count: 3 epochs without damage, else 3 from the
    previous checkpoint, which becomes the current one (weights and readable metadata)."""
    from adtransfer.learning.train import prepare_resume

    work = crafted_work(tmp_path, 3, damage)
    with open(work / "history.tsv", "a") as fh:
        fh.write("1")  # a row the kill cut short (of an epoch 1x): it would pass for epoch 1
    assert prepare_resume(work) == 3
    backup = work / "backup"
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 3
    assert _h5_value(backup / "latest.weights.h5") == 3
    state = _state(work)
    assert state["history"] == [0, 1, 2]
    assert state["seed_states"] == ["states_0003.npz"]
    assert state["early_stopping"] == ["best_0002.npz"]
    if damage == "none":
        assert state["backup"] == sorted(
            ["latest.weights.h5", "latest.weights.h5.bkp", "training_metadata.json", "training_metadata.json.bkp"]
        )
        assert "previous checkpoint" not in caplog.text
    else:
        assert state["backup"] == ["latest.weights.h5", "training_metadata.json"]
        assert "previous checkpoint, epoch 3" in caplog.text
    assert prepare_resume(work) == 3 and _state(work) == state  # a kill during the repair: the rerun agrees


@pytest.mark.parametrize("damage", ["truncated_metadata", "weights_newer_than_metadata"])
def test_kill_in_the_first_commit_restarts_from_scratch(tmp_path, damage, caplog):
    """Without a previous checkpoint (the first epoch's commit) the backup is discarded: the run restarts from
    epoch 0 rather than training epoch 0 again from the weights after it."""
    from adtransfer.learning.train import prepare_resume

    work = crafted_work(tmp_path, 0, damage)
    assert prepare_resume(work) == 0
    assert _state(work) == {"history": [], "seed_states": [], "early_stopping": [], "backup": None}
    assert "restarting from epoch 0" in caplog.text


def test_work_files_behind_the_backup_restart_from_scratch(tmp_path, caplog):
    """A committed epoch whose history row or seed state is missing cannot be resumed exactly: restart cleanly."""
    from adtransfer.learning.train import prepare_resume

    work = crafted_work(tmp_path, 3, "none")
    (work / "seed_states" / "states_0003.npz").unlink()
    assert prepare_resume(work) == 0
    assert _state(work) == {"history": [], "seed_states": [], "early_stopping": [], "backup": None}
    assert "restarting from epoch 0" in caplog.text


def _line_data() -> tuple[np.ndarray, np.ndarray]:
    """32 samples of a noiseless linear target: what the tiny dense models below fit."""
    x = np.linspace(-1, 1, 64, dtype="float32").reshape(32, 2)
    return x, x @ np.array([[1.0], [-2.0]], dtype="float32") + 0.5


@pytest.mark.parametrize("damage", ["truncated_metadata", "weights_newer_than_metadata"])
def test_keras_resumes_exactly_from_a_settled_backup(tmp_path, damage):
    """Against Keras' own BackupAndRestore (tiny dense model, 4 epochs): the commit of the third epoch killed
    halfway, settle_backup, then fit again: no JSONDecodeError, and the uninterrupted run's final weights."""
    import keras

    from adtransfer.learning.train import settle_backup

    x, y = _line_data()

    def fit(backup: Path | None, stop_before: int | None = None):
        keras.utils.set_random_seed(0)
        net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
        net.compile(keras.optimizers.Adam(0.05), "mse")

        class Kill(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == stop_before:
                    raise KeyboardInterrupt

        callbacks = [Kill()]
        if backup:
            callbacks.append(keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True))
        net.fit(x, y, epochs=4, batch_size=8, shuffle=False, verbose=0, callbacks=callbacks)
        return net.get_weights()

    expected = fit(None)
    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        fit(backup, stop_before=3)
    meta = backup / "training_metadata.json"
    text = meta.read_text()
    meta.write_text(
        text[: len(text) // 2] if damage == "truncated_metadata" else (backup / f"{meta.name}.bkp").read_text()
    )
    assert settle_backup(backup) == 2
    for a, b in zip(fit(backup), expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize(
    "every, kill_at, inside_commit, resumed_at", [(0, 5, False, 5), (3, 5, False, 3), (3, 6, True, 3)]
)
def test_periodic_backup_resumes_exactly(tmp_path, every, kill_at, inside_commit, resumed_at):
    """The training job's resumable callbacks (resumable_callbacks) on a tiny dense model, its backup committing
    after every epoch (0) or when 3 s have passed (a clock ticking one second per epoch: epochs 3, 6 and the last),
    killed when epoch index 5 begins, or inside the commit of epoch 6 (between its weights and its metadata: the
    backup falls back to the commit of epoch 3): the rerun resumes from that commit (not from epoch 0) and gives the
    uninterrupted run's history and final weights."""
    import keras

    from adtransfer.learning.train import prepare_resume, read_history, resumable_callbacks

    x, y = _line_data()

    def fit(work: Path, kill_at: int | None = None):
        keras.utils.set_random_seed(0)
        net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
        net.compile(keras.optimizers.Adam(0.05), "mse")
        now, began = [0.0], []

        class Clock(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == kill_at:
                    raise KeyboardInterrupt
                began.append(epoch)

            def on_epoch_end(self, epoch, logs=None):
                now[0] += 1.0

        work.mkdir(exist_ok=True)
        resume, _, _ = resumable_callbacks(
            net, work, patience=100, early_stopping_start=0, backup_every=every, clock=lambda: now[0]
        )
        net.fit(
            x,
            y,
            validation_data=(x[::3], y[::3]),
            epochs=8,
            batch_size=8,
            shuffle=False,
            verbose=0,
            callbacks=[Clock(), *resume],
        )
        return net.get_weights(), began, read_history(work / "history.tsv")

    expected, _, history = fit(tmp_path / "straight")
    work = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        fit(work, kill_at=kill_at)
    meta = work / "backup" / "training_metadata.json"
    if inside_commit:  # the weights of epoch 6 beside the metadata of epoch 3
        assert json.loads(meta.read_text())["epoch"] == 6
        meta.write_text((work / "backup" / "training_metadata.json.bkp").read_text())
    assert prepare_resume(work) == resumed_at
    weights, began, resumed_history = fit(work)
    assert began[0] == resumed_at and began[-1] == 7
    assert json.loads((work / "backup" / "training_metadata.json").read_text())["epoch"] == 8  # the last, always
    assert resumed_history == history
    for a, b in zip(weights, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_early_stopping_commits_its_last_epoch(tmp_path):
    """The backup commits the epoch where early stopping stops, however long before the next periodic commit: a job
    killed afterwards (writing its outputs, predicting) resumes with no epoch left to train."""
    import keras

    from adtransfer.learning.train import resumable_callbacks

    x, y = _line_data()
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    net.compile(keras.optimizers.Adam(0.05), "mse")
    work = tmp_path / "work"
    work.mkdir()
    resume, stopping, _ = resumable_callbacks(net, work, patience=1, early_stopping_start=0, backup_every=1e9)
    # validation targets of the opposite sign: the validation loss rises as the fit improves
    net.fit(x, y, validation_data=(x, -y), epochs=8, batch_size=8, shuffle=False, verbose=0, callbacks=resume)
    assert 0 < stopping.stopped_epoch < 7
    committed = json.loads((work / "backup" / "training_metadata.json").read_text())["epoch"]
    assert committed == stopping.stopped_epoch + 1
    assert not (work / "backup" / "training_metadata.json.bkp").exists()  # no periodic commit before it


def test_best_weights_of_the_committed_epochs_are_kept(tmp_path):
    """Early stopping's best-weights files: the best of the committed epochs stays (a resume replays the history up
    to the commit and reads that file back), with the current best (its epoch's commit may complete); others go."""
    import keras

    from adtransfer.learning.train import Commits, resumable_early_stopping

    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    folder = tmp_path / "early_stopping"
    folder.mkdir()
    commits = Commits(0)
    stopping = resumable_early_stopping(
        tmp_path / "history.tsv", folder, commits, monitor="val_loss", patience=100, restore_best_weights=True
    )
    stopping.set_model(net)
    stopping.replay()

    def kept():
        return sorted(int(p.stem.split("_")[1]) for p in folder.iterdir())

    # val_loss by epoch: new bests at epochs 0, 1, 3, 4; BackupAndRestore committed 2 epochs before epoch 2 ended
    for epoch, (loss, committed) in enumerate([(5, 0), (3, 1), (4, 2), (2, 2), (1, 2)]):
        commits.epochs = committed
        stopping.on_epoch_end(epoch, {"val_loss": loss})
    assert kept() == [1, 4]  # the best of the committed epochs 0-1, and the current best (epoch 3's is superseded)
    commits.epochs = 5
    stopping.on_epoch_end(5, {"val_loss": 6})
    assert kept() == [4]


def test_work_folder_of_another_job_is_started_over(tmp_path):
    """A killed job's work folder is resumed only by the same job: after its settings or inputs changed (say a new
    split), the old weights would carry subjects that may now be test subjects, so the folder is emptied."""
    from adtransfer.learning.train import WORK_MARK, claim_work_dir

    work, out = tmp_path / "work", [tmp_path / "model.keras"]
    claim_work_dir(work, out, "job A")
    (work / "history.tsv").write_text("epoch\n0\n")
    claim_work_dir(work, out, "job A")  # the same job again: its state stays
    assert (work / "history.tsv").exists()
    claim_work_dir(work, out, "job B")  # another job: nothing of A's state survives
    assert sorted(p.name for p in work.iterdir()) == [WORK_MARK] and (work / WORK_MARK).read_text() == "job B"


def test_work_folder_removal_interrupted_by_a_kill_is_finished(tmp_path, monkeypatch):
    """The work folder is renamed before it is removed: a kill during the removal leaves `.work.discarded`, not a
    `work` folder that lost its mark (which the rerun would refuse), and the next claim removes it."""
    import shutil as shutil_module

    from adtransfer.learning.train import WORK_MARK, claim_work_dir, discard_folder

    work, out = tmp_path / "work", [tmp_path / "model.keras"]
    claim_work_dir(work, out, "job A")
    (work / "history.tsv").write_text("epoch\n0\n")
    left = tmp_path / ".work.discarded"
    rmtree = shutil_module.rmtree

    def killed_during_removal(path, *args, **kwargs):
        if Path(path) == left and left.exists():
            raise KeyboardInterrupt
        return rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil_module, "rmtree", killed_during_removal)
    with pytest.raises(KeyboardInterrupt):
        discard_folder(work)
    monkeypatch.undo()
    assert not work.exists() and (left / WORK_MARK).exists()
    claim_work_dir(work, out, "job A")
    assert not left.exists() and sorted(p.name for p in work.iterdir()) == [WORK_MARK]
