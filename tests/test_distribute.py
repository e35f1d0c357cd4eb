"""--distribute: models trained data parallel on two devices against the same models on one.

Two devices on a CPU are virtual ones, which a process must make before its backend starts:
each backend's runs share one subprocess (SCRIPT), which trains each model on two devices and,
to compare, on one, and prints the results and how far the weights moved apart.
"""
import importlib.util
import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest

import data
import main
import train
from conftest import ROOT, make_idx_folder
from train import SettingError

# 288 images to train, 32 to validate, 64 to test: every batch (BATCH to train, train.EVALUATION_BATCH
# to score) is full, so each step is compiled once, and splits evenly over 2 devices.
TRAIN_IMAGES, TEST_IMAGES, BATCH = 320, 64, 96
# The same sums added in another order: float32 rounding, compounded over an epoch of 3 steps
# (measured: weights 5e-7 apart, losses 1e-7).
ROUNDING = 1e-5

SCRIPT = r"""
import json, os, sys
root, data_dir, hashes, models = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
sys.path.insert(0, root)
if os.environ["KERAS_BACKEND"] == "tensorflow":  # two logical CPU devices, made before TensorFlow starts
    import tensorflow as tf
    [cpu] = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
else:  # Keras would load TensorFlow only to seed it too: 2 of the seconds this test may take
    sys.modules["tensorflow"] = None
import keras
import numpy as np
import data, train
from model import RandomShift

data.IDX_SHA256 = {"mnist": hashes}
dataset = data.load_dataset("mnist", data_dir)
# SGD: a step is as large as the gradient, so a gradient summed or split wrongly shows.
settings = train.Training(optimizer="sgd", learning_rate=0.1, batch_size=%(batch)d, epochs=1)
assert len(train.data_parallel_devices()) == 2, train.data_parallel_devices()


def shifted_mlp(input_shape, num_classes):
    # What a strategy could break: the project's random shifts, batch norm (recomputed once trained), dropout.
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(16, use_bias=False)(keras.layers.Flatten()(RandomShift(0.1)(inputs)))
    hidden = keras.layers.Dropout(0.25)(keras.layers.ReLU()(keras.layers.BatchNormalization()(hidden)))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(hidden))


def trained(model, distributed):
    with train.distributed(distributed):
        network, result = train.train_and_evaluate(shifted_mlp if model == "shifted_mlp" else model, dataset,
                                                   settings, verbose=0)
    return result, network.get_weights(), devices_holding(network.weights[0].value)


def devices_holding(variable):
    if keras.backend.backend() == "jax":
        return len(variable.sharding.device_set)
    return len(getattr(variable, "values", [variable]))  # a MirroredVariable's copies


report = {}
for model, compared in models.items():
    two, weights, devices = trained(model, True)
    report[model] = {"two": two, "devices": devices}
    if compared:
        one, reference, _ = trained(model, False)
        # The largest change of any weight, relative to the largest weight of its tensor.
        change = max(float(np.abs(w - r).max() / np.abs(r).max()) for w, r in zip(weights, reference))
        report[model].update(one=one, weights=change)
print(json.dumps(report))
""" % {"batch": BATCH}


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """A data folder with a few hundred MNIST-like images; returns it, with the hashes data.py checks."""
    hashes = make_idx_folder(tmp_path / "mnist", n_train=TRAIN_IMAGES, n_test=TEST_IMAGES)
    monkeypatch.setattr(data, "IDX_SHA256", {"mnist": hashes})
    return tmp_path, hashes


def on_two_devices(backend, models, tiny_mnist):
    """SCRIPT's report on `models` ({name: whether to compare it with one device}), run on
    `backend` with two virtual CPU devices."""
    data_dir, hashes = tiny_mnist
    # JAX's two devices (TensorFlow's are made in SCRIPT), compiled without LLVM's optimisations:
    # compiling is most of the test's time (9.5 s of CPU time, 6.6 s without), and both runs compile alike.
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT), str(data_dir), json.dumps(hashes),
                          json.dumps(models)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])


def assert_same_training(comparison):
    """Two devices trained what one did, to ROUNDING: the weights, and the losses epoch by epoch;
    the accuracies exactly."""
    one, two = comparison["one"], comparison["two"]
    assert comparison["devices"] == 2 and comparison["weights"] < ROUNDING
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=ROUNDING)
    np.testing.assert_allclose(two["test_loss"], one["test_loss"], rtol=ROUNDING)
    assert (two["history"]["accuracy"], two["test_accuracy"]) == (one["history"]["accuracy"], one["test_accuracy"])


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed: pip install 'jax[cpu]'")
def test_jax_data_parallel_trains_what_one_device_does(tiny_mnist):
    """JAX runs a step as one computation over the whole batch, laid out over the devices:
    batch norm's statistics are the whole batch's, and the random shifts and dropout masks
    are drawn for the whole batch (JAX's partitionable threefry), the ones one device draws.
    Only the order of the sums changes."""
    assert_same_training(on_two_devices("jax", {"shifted_mlp": True}, tiny_mnist)["shifted_mlp"])


def test_tensorflow_mirrored_strategy_trains_what_one_device_does(tiny_mnist):
    """MirroredStrategy runs a step on each device's share of the batch. l42_mlp, which has no
    batch norm and draws nothing at random, trains what one device does.

    shifted_mlp cannot: its batch norm normalises each share with that share's own statistics,
    and both devices draw the same shifts and dropout masks for their shares, as their random
    generators start from the same state. Compared by hand, its weights came out 27% apart
    (relative to the largest of their tensor) and its losses 0.2-1%; here it must train, its
    random layers and its batch norm recomputed, and give finite losses. As the second model
    of the run, it also checks that one strategy serves them all (see train.mirrored_strategy)."""
    report = on_two_devices("tensorflow", {"l42_mlp": True, "shifted_mlp": False}, tiny_mnist)
    assert_same_training(report["l42_mlp"])
    shifted = report["shifted_mlp"]
    assert shifted["devices"] == 2 and all(map(math.isfinite, [*shifted["two"]["history"]["loss"],
                                                              shifted["two"]["test_loss"]]))


def test_one_device_trains_as_without_distribute(data_dir, tmp_path, capsys):
    """This process has one device, the CPU: --distribute trains on it the very model a run
    without it does, through main.py (a MirroredStrategy of one device, or a DataParallel)."""
    results = {}
    for run, flags in [("plain", []), ("distributed", ["--distribute"])]:
        main.main(["--data-dir", str(data_dir), "--model", "l42_mlp", "--epochs", "1", "--batch-size", "32",
                   "--checkpoints", str(tmp_path / "ck"), "--results", str(tmp_path / f"{run}.json"), *flags])
        [results[run]] = json.loads((tmp_path / f"{run}.json").read_text())["models"]
        results[run].pop("train_seconds")
    assert "data parallel over 1 device\n" in capsys.readouterr().out
    assert results["distributed"] == results["plain"]


def test_pytorch_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(SystemExit) as exit:
        main.parse_args(["--distribute"])
    assert exit.value.code == 2
    assert "argument --distribute: Keras's PyTorch backend does not train on several devices" in capsys.readouterr().err
    with pytest.raises(SettingError, match="torch backend does not train on several devices here"):
        with train.distributed():
            pass


def test_batches_that_do_not_split_evenly_stop_the_run_before_it_starts(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(main, "data_parallel_devices", lambda: ["cpu:0", "cpu:1", "cpu:2"])
    with pytest.raises(SystemExit) as exit:
        main.main(["--data-dir", str(data_dir), "--model", "l42_mlp", "--batch-size", "30", "--distribute",
                   "--checkpoints", str(tmp_path / "ck"), "--results", str(tmp_path / "r.json")])
    assert exit.value.code == ("error: l42_mlp: --distribute: the 10 validation images, in batches of 32, leave a "
                               "last batch of 10, which does not split evenly over 3 devices; choose another "
                               "--batch-size or --limit")
    assert sorted(tmp_path.iterdir()) == [data_dir / name for name in ("fashion-mnist", "mnist",
                                                                         "notMNIST_small.tar.gz")]


@pytest.mark.parametrize("train_images, batch_size, devices, problem", [
    (288, 96, 2, None),
    (288, 96, 1, None),
    (290, 96, 2, None),  # a last batch of 2
    (289, 96, 2, "the 289 training images, in batches of 96, leave a last batch of 1, which does not split "
                 "evenly over 2 devices"),  # JAX cannot; TensorFlow would take half a step on it
    (288, 100, 8, "a batch of 100 training images does not split evenly over 8 devices"),
    (50, 100, 8, "the 50 training images, in batches of 100, leave a last batch of 50, which does not split "
                 "evenly over 8 devices"),
])
def test_uneven_batches(train_images, batch_size, devices, problem):
    dataset = SimpleNamespace(x_train=range(train_images), x_val=range(32), x_test=range(64))
    assert train.uneven_batches(dataset, batch_size, devices) == problem
