"""Inception v3 with the paper's heads: both tasks build, every offline init mode, fine-tuning keeps the backbone."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from adtransfer.errors import InputError  # noqa: E402
from adtransfer.learning import model as models  # noqa: E402


@pytest.fixture(scope="module")
def backbone():
    return models.build_backbone(76, "random", shift=0.03, zoom=0.03, seed=1, bn_momentum=0.9)


def test_classifier_head(backbone):
    net = models.add_head(backbone, "classify", 256)
    assert net.output.shape == (None, 2)
    assert net.get_layer("head_fc").units == 256
    assert net.get_layer("head_dropout").rate == 0.5
    p = net.predict(np.zeros((2, 76, 76, 1), np.float32), verbose=0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    # Inception's mixed layers are layers of the model itself (Grad-CAM needs them)
    assert net.get_layer("mixed10").output.shape[-1] == 2048
    assert net.get_layer("mixed7").output.shape[1] == 3  # 76 px -> 3x3 maps


def test_mmse_head_outputs_scores_in_0_30(backbone):
    net = models.add_head(backbone, "mmse", 128)
    rng = np.random.default_rng(0)
    pred = net.predict(rng.normal(size=(4, 76, 76, 1)).astype(np.float32) * 5, verbose=0)
    assert pred.shape == (4,)
    assert np.all((pred >= 0) & (pred <= 30))


def test_bn_momentum_set_on_every_bn_layer(backbone):
    bns = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 94 and all(layer.momentum == 0.9 for layer in bns)


def test_augmentation_only_when_training(backbone):
    x = np.random.default_rng(1).normal(size=(1, 76, 76, 1)).astype(np.float32)
    shift = backbone.get_layer("augment_shift")
    np.testing.assert_array_equal(shift(x, training=False), x)
    assert not np.allclose(shift(x, training=True), x)


def test_local_weights_file_is_loaded(tmp_path):
    source = models.build_backbone(76, "random", seed=5)
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(76, 76, 3))
    base.set_weights([w for w in source.get_weights()])
    path = tmp_path / "inception.weights.h5"
    base.save_weights(path)
    loaded = models.build_backbone(76, str(path))
    for a, b in zip(loaded.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_imagenet_unavailable_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(InputError) as err:
        models.build_backbone(76, "imagenet")
    msg = str(err.value)
    assert str(tmp_path / "models" / models.IMAGENET_FILE) in msg and "nothing is downloaded" in msg


def test_missing_weights_file_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        models.build_backbone(76, str(tmp_path / "nope.h5"))


def test_finetuning_keeps_backbone_and_replaces_head(tmp_path, backbone):
    fdg = models.add_head(backbone, "classify", 256)
    path = tmp_path / "fdg.keras"
    fdg.save(path)
    ecd = models.from_pretrained(path, "classify", 128)
    assert ecd.get_layer("head_fc").units == 128
    # the first convolution, the last concatenation and the last batch norm of the backbone (by type: automatic
    # layer names depend on what else the process built before)
    convs = [layer.name for layer in fdg.layers if isinstance(layer, keras.layers.Conv2D)]
    bns = [layer.name for layer in fdg.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for name in (convs[0], "mixed10", [n for n in bns if not n.startswith("head_")][-1]):
        for a, b in zip(ecd.get_layer(name).get_weights(), fdg.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    mmse = models.from_pretrained(path, "mmse", 128)
    assert mmse.output.shape == (None,)


def test_mmse_model_starts_from_the_classifiers_backbone(tmp_path, backbone):
    """The FDG MMSE model fine-tunes the FDG classifier (paper, Fig. 5): every backbone weight starts equal to the
    classifier's, only the head is new (a regression head on the same pooled features)."""
    classifier = models.add_head(backbone, "classify", 16)
    path = tmp_path / "fdg.keras"
    classifier.save(path)
    mmse = models.from_pretrained(path, "mmse", 16)
    body = [layer for layer in mmse.layers if not layer.name.startswith(models.HEAD_PREFIX) and layer.weights]
    assert len(body) > 90  # Inception v3's convolutions and batch norms
    for layer in body:
        for a, b in zip(layer.get_weights(), classifier.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    assert mmse.get_layer("head_sigmoid").get_weights()[0].shape == (16, 1)
    assert "head_softmax" not in [layer.name for layer in mmse.layers]


@pytest.mark.parametrize("task", ["classify", "mmse"])
def test_training_state_is_built_before_fit_on_inception(backbone, task, caplog):
    """The pre-fit build (Keras' private API) works on the trained architecture itself (Inception v3 with the
    paper's augmentation layers, as config/paper.yaml trains it): otherwise it only logs a warning, and every job
    would trace its training step twice again. The trace count is checked on a small model below."""
    import tensorflow as tf

    net = models.compile_model(models.add_head(backbone, task, 16), task, 1e-3)
    y = tf.TensorSpec((None,), tf.int64 if task == "classify" else tf.float32)
    with caplog.at_level("WARNING", logger="adtransfer"):
        models.build_training_state(net, (tf.TensorSpec((None, 76, 76, 1), tf.float32), y))
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert net.optimizer.built and len(net.optimizer.variables) > len(net.trainable_variables)
    assert any(m.variables for m in net.metrics)  # the compiled metrics' variables too


@pytest.fixture(scope="module")
def small_backbone():
    """A one-convolution stand-in for Inception v3 with its input and pooled-feature layer: what the training state
    depends on (the optimizer's and the metrics' variables, the head's batch norm and dropout) is the same, and
    tracing its training step takes a fraction of a second instead of ~15 s."""
    inputs = keras.Input((76, 76, 1))
    x = keras.layers.Conv2D(8, 3, strides=4, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name=models.POOL_LAYER)(x), name="small")


@pytest.mark.parametrize("task", ["classify", "mmse"])
def test_training_state_built_before_fit_traces_the_step_once(small_backbone, monkeypatch, task):
    """Optimizer and metric variables exist before fit, so TensorFlow traces the training step once (a step that
    creates variables is traced twice: ~10 s of a CPU job's start-up with Inception v3)."""
    import tensorflow as tf
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    traced = []
    step = TensorFlowTrainer.train_step
    monkeypatch.setattr(TensorFlowTrainer, "train_step", lambda self, data: traced.append(1) or step(self, data))
    net = models.compile_model(models.add_head(small_backbone, task, 16), task, 1e-3)
    y = np.array([0, 1, 0, 1]) if task == "classify" else np.array([20.0, 25.0, 28.0, 30.0], np.float32)
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 76, 76, 1), np.float32), y)).batch(2)
    models.build_training_state(net, ds.element_spec)
    assert net.optimizer.built and len(net.optimizer.variables) > len(net.trainable_variables)
    net.fit(ds, epochs=2, verbose=0, shuffle=False)  # as train_model: the dataset orders itself
    assert len(traced) == 1


def test_graph_optimizer_is_off_without_a_gpu():
    """Every TensorFlow job starts through configure_tensorflow: without a GPU it turns Grappler off (its rewrites
    cost each job seconds of start-up and did not speed up CPU steps; train.GRAPPLER_ON_CPU)."""
    import tensorflow as tf

    from adtransfer.learning.train import configure_tensorflow

    configure_tensorflow(0, 2)
    off = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    assert off == (not tf.config.list_physical_devices("GPU"))
