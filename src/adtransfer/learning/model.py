"""Inception v3 with the paper's heads, for AD/NC classification and MMSE regression.

    mosaic (S, S, 1) -> [augment: shift, zoom; training only] -> gray to 3 channels -> Inception v3 (avg pool)
        -> Dense(256 FDG | 128 ECD) -> BatchNorm -> ReLU -> Dropout(0.5) -> Dense(2, softmax)   (classification)
                                                                       -> Dense(1, sigmoid) x 30  (MMSE)

Inception v3's layers are built on the model's own graph (input_tensor), so `mixed7`/`mixed10` are layers of
the model itself, as Grad-CAM needs. Weights: "imagenet" (Keras' file, which must already be in the Keras
cache: nothing is downloaded at run time), a local .h5 weights file, or "random".
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import keras
from keras import layers

from adtransfer.errors import InputError

log = logging.getLogger(__name__)

IMAGENET_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
HEAD_PREFIX = "head_"
# two feature layers, each right for its user: the backbone's 2048 pooled features, where fine-tuning cuts the
# pre-trained model and puts a new head; and the head's FC layer after batch norm and ReLU (256 FDG | 128 ECD),
# whose activations `predict` saves for the paper's t-SNE plots
POOL_LAYER = "avg_pool"
FC_FEATURES_LAYER = f"{HEAD_PREFIX}relu"


@keras.saving.register_keras_serializable(package="adtransfer")
class PositiveClassAUC(keras.metrics.AUC):
    """ROC AUC of the AD column of a 2-class softmax against integer labels."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(keras.ops.reshape(y_true, (-1,)), y_pred[:, 1], sample_weight)


def imagenet_weights_path() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / IMAGENET_FILE


def resolve_weights(init: str) -> str | None:
    """Keras' `weights=` argument for a config `init`, checked to be loadable offline."""
    if init == "random":
        return None
    if init == "imagenet":
        path = imagenet_weights_path()
        if not path.exists():
            raise InputError(
                f"ImageNet weights requested (train.init: imagenet) but {path} is missing and nothing is "
                f"downloaded at run time. Copy {IMAGENET_FILE} (from a machine with internet: "
                "keras.applications.InceptionV3(weights='imagenet', include_top=False) saves it there) into "
                f"{path.parent}, or set train.init to a local weights file, or to random."
            )
        return "imagenet"
    if not Path(init).is_file():
        raise InputError(f"train.init: weights file {init} does not exist (expected imagenet, random or a .h5 path)")
    return init


def augmentation(shift: float, zoom: float, seed: int) -> list[layers.Layer]:
    """The paper's augmentation (random shift 0-3 %, zoom 1-1.03), active only while training."""
    out = []
    if shift > 0:
        out.append(layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=seed, name="augment_shift"))
    if zoom > 0:
        out.append(layers.RandomZoom((-zoom, 0.0), fill_mode="nearest", seed=seed + 1, name="augment_zoom"))
    return out


def build_backbone(
    size: int, init: str, shift: float = 0.0, zoom: float = 0.0, seed: int = 0, bn_momentum: float | None = None
) -> keras.Model:
    """Input -> augmentation -> 3 channels -> Inception v3 -> global average pool (2048 features)."""
    weights = resolve_weights(init)
    inp = keras.Input((size, size, 1), name="mosaic")
    x = inp
    for layer in augmentation(shift, zoom, seed):
        x = layer(x)
    x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    base = keras.applications.InceptionV3(include_top=False, weights=weights, input_tensor=x)
    features = layers.GlobalAveragePooling2D(name=POOL_LAYER)(base.output)
    model = keras.Model(inp, features, name="backbone")
    if bn_momentum is not None:
        set_bn_momentum(model, bn_momentum)
    return model


def set_bn_momentum(model: keras.Model, momentum: float) -> None:
    """Faster-moving BN statistics: with random init and a high learning rate, Keras' 0.99 lags the weights."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum


def add_head(backbone: keras.Model, task: str, fc_units: int, seed: int = 0) -> keras.Model:
    """The paper's head on a backbone's 2048 pooled features."""
    features = backbone.get_layer(POOL_LAYER).output
    x = layers.Dense(fc_units, name=f"{HEAD_PREFIX}fc")(features)
    x = layers.BatchNormalization(name=f"{HEAD_PREFIX}bn")(x)
    x = layers.ReLU(name=FC_FEATURES_LAYER)(x)
    x = layers.Dropout(0.5, seed=seed, name=f"{HEAD_PREFIX}dropout")(x)
    if task == "classify":
        out = layers.Dense(2, activation="softmax", name=f"{HEAD_PREFIX}softmax")(x)
    elif task == "mmse":
        x = layers.Dense(1, activation="sigmoid", name=f"{HEAD_PREFIX}sigmoid")(x)
        out = layers.Rescaling(30.0, name=f"{HEAD_PREFIX}mmse")(layers.Reshape((), name=f"{HEAD_PREFIX}flat")(x))
    else:
        raise ValueError(f"unknown task {task!r}")
    return keras.Model(backbone.input, out, name=f"inception_v3_{task}")


def from_pretrained(path: str | os.PathLike, task: str, fc_units: int, seed: int = 0) -> keras.Model:
    """Fine-tuning: the pre-trained model's backbone (all its weights) with a new head, as the paper does."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pre-trained model {path} does not exist")
    pretrained = keras.saving.load_model(path, compile=False)
    backbone = keras.Model(pretrained.input, pretrained.get_layer(POOL_LAYER).output, name="backbone")
    return add_head(backbone, task, fc_units, seed)


def compile_model(
    model: keras.Model, task: str, learning_rate: float, jit_compile: bool | str = "auto", steps_per_execution: int = 1
) -> keras.Model:
    """Adam and the task's loss and metrics. `jit_compile`: Keras' XLA switch ("auto": XLA on a GPU, not on a CPU);
    `steps_per_execution`: training steps per call of the compiled function (fewer Python round trips)."""
    opt = keras.optimizers.Adam(learning_rate)
    options = {"jit_compile": jit_compile, "steps_per_execution": steps_per_execution}
    if task == "classify":
        metrics = ["accuracy", PositiveClassAUC(name="auc")]
        model.compile(opt, loss="sparse_categorical_crossentropy", metrics=metrics, **options)
    else:
        model.compile(opt, loss="mse", metrics=["mae"], **options)
    return model


def build_training_state(model: keras.Model, data_spec) -> None:
    """Create the optimizer's and the metrics' variables before `fit`, from the training data's spec (a dataset's
    element_spec). Without a distribution strategy Keras creates them while tracing the first training step, and
    TensorFlow traces a tf.function that creates variables twice: building them first leaves one trace of the
    step (measured on the demo's ECD job: 1 trace instead of 2). Keras' own pre-fit build is private API; if it
    is renamed this does nothing and training is only slower to start."""
    build = getattr(model, "_symbolic_build", None)
    if build is None:
        return
    try:
        build(data_batch=data_spec)
    # a Keras whose private build takes other arguments or fails otherwise (it wraps most errors in RuntimeError):
    # fit builds the state instead
    except (TypeError, ValueError, RuntimeError) as exc:
        log.warning("building the training state before fit failed (%s); Keras builds it while tracing", exc)
