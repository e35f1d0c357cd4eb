"""Train and test one model: the training loop that main.py and the experiments share.

A run is reproducible and survives interruptions:
- `seed` fixes everything random: the initial weights, dropout, augmentation, and the
  order of the training images, which depends on (seed, epoch) only;
- with a `checkpoint_dir`, the complete state after each epoch (weights, optimizer,
  random generators, early stopping, history) is saved. A run killed at any moment and
  started again with the same arguments carries on from the last completed epoch, as if
  it had never stopped. The folder is removed once training has finished;
- a NaN or infinite loss stops training at once with a TrainingError saying where.
"""
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from data import atomic_file
from model import get_model

OPTIMIZERS = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
    "adadelta": keras.optimizers.Adadelta,
    "adagrad": keras.optimizers.Adagrad,
    "adamax": keras.optimizers.Adamax,
    "nadam": keras.optimizers.Nadam,
}
ONE_CYCLE_WARMUP = 0.2  # the fraction of a one-cycle run spent warming up
# Keras dtype policies: mixed ones compute in 16 bits and keep the weights in float32.
PRECISIONS = ["float32", "mixed_bfloat16", "mixed_float16"]


def compute_device():
    """The kind and name of the device Keras computes on, e.g. ('gpu', 'NVIDIA H100 80GB HBM3')."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        first = jax.devices()[0]
        if first.platform != "cpu":
            return first.platform, first.device_kind
    elif backend == "tensorflow":  # TensorFlow-only calls live here, in seed_everything and ShuffledBatches
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return "gpu", tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    elif backend == "torch":
        import torch
        if torch.cuda.is_available():
            return "gpu", torch.cuda.get_device_name(0)
    return "cpu", f"{platform.machine()}, {os.cpu_count()} cores"


def describe_device():
    """The device in words, e.g. 'GPU (NVIDIA H100 80GB HBM3)' or 'CPU (x86_64, 2 cores)'."""
    kind, name = compute_device()
    return f"{kind.upper()} ({name})"


def default_steps_per_execution():
    """How many training steps each call into the compiled step runs, on this device.

    The Python work between calls (the callbacks: the NaN check, early stopping's and the
    checkpoint's bookkeeping) is paid once per call. A GPU runs a step of these small
    networks in 1-4 ms, and there this loop cost 1.1-1.9 times a plain model.fit per step
    (results/speed-gpu.md, one step per call); 16 steps per call pay for the callbacks once
    per 16. A CPU step takes 2-150 ms, and more steps per call buy little there
    (results/speed-cpu.md). PyTorch's trainer runs one step per call only.
    """
    if keras.backend.backend() == "torch" or compute_device()[0] == "cpu":
        return 1
    return 16


def scaled_learning_rate(learning_rate, optimizer, batch_size, tuned_batch_size):
    """The learning rate for `batch_size` images per step, from one tuned for `tuned_batch_size`.

    SGD: k times the batch, k times the rate (the linear rule: Goyal et al. 2017, "Accurate,
    large minibatch SGD"). Adam and the other adaptive optimizers: sqrt(k) times the rate
    (the square-root rule: Malladi et al. 2022, "On the SDEs and scaling rules for adaptive
    gradient algorithms").
    """
    ratio = batch_size / tuned_batch_size
    return learning_rate * (ratio if optimizer == "sgd" else math.sqrt(ratio))


class TrainingError(Exception):
    """Training cannot go on; the message says why."""


def train_and_evaluate(model, dataset, settings, seed=0, hyperparameters=None,
                       checkpoint_dir=None, verbose=1):
    """Build, train and test one model; return it with a dict of its results.

    model: a name in model.MODELS, or a function (input_shape, num_classes, **hyperparameters).
    settings: optimizer (a name, or a function returning an optimizer), learning_rate,
        batch_size, epochs and, optionally, patience (early stopping), loss,
        label_smoothing (with integer labels), one_cycle (True: warm the learning rate up to
        learning_rate, then anneal it to 0 by the last epoch), optimizer_options (e.g.
        momentum), callbacks (functions returning callbacks), and two speed options:
        precision (one of PRECISIONS, default float32) and steps_per_execution (default:
        default_steps_per_execution()).
    """
    seed_everything(seed)
    name = model if isinstance(model, str) else model.__name__
    model = build_model(model, dataset, settings.get("precision", "float32"), hyperparameters)
    if verbose:
        model.summary()
    loss = keras.losses.get(settings.get("loss", "sparse_categorical_crossentropy"))
    if settings.get("label_smoothing"):
        loss = SmoothedCrossentropy(settings["label_smoothing"])
    batches = ShuffledBatches(dataset.x_train, dataset.y_train, settings["batch_size"], seed)
    # The loss once more as a metric: the data term alone, without the weight penalties
    # (L2, ...) that the loss includes. Early stopping watches this one: a penalty that
    # grows while the fit to the data improves is not overfitting.
    model.compile(optimizer=make_optimizer(settings, steps=settings["epochs"] * len(batches)),
                  loss=loss, metrics=["accuracy", DataLoss(loss)],
                  steps_per_execution=settings.get("steps_per_execution") or default_steps_per_execution())

    early_stopping = None
    if settings.get("patience"):
        early_stopping = keras.callbacks.EarlyStopping(
            monitor="val_data_loss", mode="min", patience=settings["patience"], restore_best_weights=True)
    checkpoint = Checkpoint(checkpoint_dir, early_stopping)  # after EarlyStopping: it restores its state
    if checkpoint.initial_epoch and verbose:
        print(f"Resuming after epoch {checkpoint.initial_epoch} from {checkpoint_dir}")
    start = time.perf_counter()
    model.fit(batches.for_fit(), shuffle=False,  # `batches` shuffles itself, reproducibly
              epochs=settings["epochs"], initial_epoch=checkpoint.initial_epoch,
              validation_data=(dataset.x_val, dataset.y_val), verbose=verbose,
              callbacks=[batches.reshuffle, StopOnNaN(), *[make() for make in settings.get("callbacks", [])],
                         *filter(None, [early_stopping]), checkpoint])
    train_seconds = time.perf_counter() - start + checkpoint.seconds_before
    checkpoint.remove()

    history = {key: [logs[key] for logs in checkpoint.history] for key in checkpoint.history[0]}
    epochs_run = len(checkpoint.history)
    # With early stopping the best epoch's weights are back in place: report that epoch.
    best = early_stopping.best_epoch if early_stopping else epochs_run - 1
    val = model.evaluate(dataset.x_val, dataset.y_val, verbose=0, return_dict=True)
    test = model.evaluate(dataset.x_test, dataset.y_test, verbose=0, return_dict=True)
    return model, {
        "name": name,
        "params": model.count_params(),
        "epochs_run": epochs_run,
        "best_epoch": best + 1,
        "train_seconds": round(train_seconds, 1),
        "train_accuracy": history["accuracy"][best],  # running mean while training
        "val_accuracy": val["accuracy"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "history": history,  # per epoch: loss, accuracy, data_loss, and the same for val_
    }


def build_model(model, dataset, precision, hyperparameters):
    """The model, its layers computing in `precision`: a Keras dtype policy such as "mixed_bfloat16"."""
    default = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # layers take the policy in force when they are made
    try:
        return get_model(model, dataset.input_shape, dataset.num_classes, **(hyperparameters or {}))
    finally:
        keras.config.set_dtype_policy(default)


@keras.saving.register_keras_serializable(package="improve_your_network")
class DataLoss(keras.metrics.Mean):
    """The mean of `loss` per image: the loss without any weight penalty (L2, ...)."""

    def __init__(self, loss="sparse_categorical_crossentropy", name="data_loss", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.loss = keras.losses.get(loss)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if len(y_true.shape) == len(y_pred.shape) - 1 and y_pred.shape[-1] == 1:  # one sigmoid unit
            y_true = keras.ops.expand_dims(y_true, -1)  # as compile() does for the loss itself
        super().update_state(self.loss(y_true, y_pred), sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "loss": keras.losses.serialize(self.loss)}


@keras.saving.register_keras_serializable(package="improve_your_network")
class SmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy against integer labels smoothed: 1 - smoothing + smoothing / classes for
    the true class, smoothing / classes for the others. (Keras smooths one-hot labels only.)"""

    def __init__(self, smoothing=0.1, name="smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smoothing = smoothing

    def call(self, y_true, y_pred):
        y_true = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), y_pred.shape[-1])
        return keras.losses.categorical_crossentropy(y_true, y_pred, label_smoothing=self.smoothing)

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing}


def make_optimizer(settings, steps):
    """The optimizer `settings` ask for; `steps`: how many training steps the run will take."""
    optimizer = settings["optimizer"]
    if callable(optimizer):  # a fresh optimizer for every model, e.g. one with a schedule
        return optimizer()
    learning_rate = settings["learning_rate"]
    if settings.get("one_cycle"):  # linear warm-up over the first 20% of the steps, cosine decay after
        warmup = round(ONE_CYCLE_WARMUP * steps)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate / 10, decay_steps=steps - warmup, warmup_target=learning_rate, warmup_steps=warmup)
    return OPTIMIZERS[optimizer](learning_rate=learning_rate, **settings.get("optimizer_options", {}))


def seed_everything(seed):
    keras.utils.set_random_seed(seed)  # Python, NumPy and the backend's generators
    if keras.backend.backend() == "tensorflow":  # TensorFlow also needs deterministic kernels
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()


class ShuffledBatches(keras.utils.PyDataset):
    """The training set in batches, in an order that depends only on (seed, epoch).

    model.fit(shuffle=True) draws each epoch's order from a generator whose position a
    resumed run cannot recover; here epoch 7 is shuffled the same way whether or not
    the run was interrupted before it.
    """

    def __init__(self, x, y, batch_size, seed):
        super().__init__()
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.reshuffle = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: self.shuffle(epoch))
        self.shuffle(0)

    def shuffle(self, epoch):
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        chosen = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.x[chosen], self.y[chosen]

    def for_fit(self):
        """What to give model.fit: these batches, on TensorFlow through a tf.data pipeline with
        its autotuning off.

        Keras feeds a PyDataset to TensorFlow through tf.data with autotuning on, and on this
        project's 2-core CPU that ran whole epochs on one core, at half the speed (spark_baseline,
        4-epoch runs: 5 of 16 epochs with autotuning, 0 of 24 without).
        """
        if keras.backend.backend() != "tensorflow":
            return self
        import tensorflow as tf
        signature = tuple(tf.TensorSpec((None, *array.shape[1:]), array.dtype) for array in (self.x, self.y))
        batches = tf.data.Dataset.from_generator(lambda: (self[i] for i in range(len(self))),
                                                 output_signature=signature)
        options = tf.data.Options()
        options.autotune.enabled = False
        # The length tells Keras an epoch's steps; one batch is cut while the step before it runs.
        return batches.apply(tf.data.experimental.assert_cardinality(len(self))).prefetch(1).with_options(options)


class StopOnNaN(keras.callbacks.Callback):
    """Stop at the first batch whose loss is NaN or infinite, rather than train a broken model.

    Keras calls it once per call into the compiled step (see default_steps_per_execution),
    with the running mean of the epoch's loss, which stays NaN once a batch made it so.
    """

    # On JAX and PyTorch, Keras hands batch-end callbacks to a thread so the next step can be
    # queued on the device meanwhile; any callback that reads every batch's logs turns that off
    # unless it says it is safe. This one is: it only reads, and its error still reaches fit()
    # (a step or two later) with the batch it names.
    async_safe = True

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingError(
                f"The loss became {loss} at epoch {self.epoch + 1}, by batch {batch + 1}: training diverged. "
                f"Try a smaller learning rate. The last completed epoch's checkpoint, if any, is kept.")


class Checkpoint(keras.callbacks.Callback):
    """Keep the history of a run and, given a folder, the state to resume it after each epoch.

    Each epoch's state goes to a new subfolder; only once that is complete does the small
    latest.json point to it (written to a temporary file, then renamed), so a kill at any
    moment leaves the previous complete state in place. Weights and optimizer state are
    saved by Keras (model.save_weights); the random generators' positions and the early
    stopping state, which it does not save, go in latest.json.
    """

    def __init__(self, folder=None, early_stopping=None):
        super().__init__()
        self.folder, self.early_stopping = (Path(folder) if folder else None), early_stopping
        self.history, self.seconds_before, self.saved = [], 0.0, None
        if self.folder and (self.folder / "latest.json").exists():
            self.saved = json.loads((self.folder / "latest.json").read_text())
            self.history, self.seconds_before = self.saved["history"], self.saved["seconds"]
        self.initial_epoch = len(self.history)

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()
        if not self.saved:
            return
        state = self.folder / self.saved["state"]
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(state / "model.weights.h5")
        for variable, value in zip(seed_states(self.model), self.saved["seeds"]):
            variable.assign(np.array(value, dtype="uint32"))
        if self.early_stopping:
            for key, value in self.saved["early_stopping"].items():
                setattr(self.early_stopping, key, value)
            if (state / "best.npz").exists():
                with np.load(state / "best.npz") as best:
                    self.early_stopping.best_weights = [best[f"arr_{i}"] for i in range(len(best.files))]

    def on_epoch_end(self, epoch, logs=None):
        self.history.append({key: float(value) for key, value in logs.items()})
        if self.folder:
            self.save(epoch + 1)

    def save(self, epochs_done):
        state = self.folder / f"epoch-{epochs_done:04d}"
        shutil.rmtree(state, ignore_errors=True)  # a half-written leftover of a killed run
        state.mkdir(parents=True)
        self.model.save_weights(state / "model.weights.h5")
        latest = {"state": state.name, "history": self.history,
                  "seconds": self.seconds_before + time.perf_counter() - self.start,
                  "seeds": [keras.ops.convert_to_numpy(v).tolist() for v in seed_states(self.model)]}
        if self.early_stopping:
            stopper = self.early_stopping
            latest["early_stopping"] = {"wait": stopper.wait, "best": stopper.best,
                                        "best_epoch": stopper.best_epoch}
            if stopper.best_weights is not None:
                np.savez(state / "best.npz", *stopper.best_weights)
        write_json(self.folder / "latest.json", latest)  # the moment this state becomes the one to resume
        for old in self.folder.glob("epoch-*"):
            if old != state:
                shutil.rmtree(old)

    def remove(self):
        """Training finished: the next run with the same arguments starts afresh."""
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def seed_states(model):
    """The positions of the model's random generators (dropout, augmentation)."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def write_json(path, content):
    write_text(path, json.dumps(content, indent=2))


def write_text(path, text):
    with atomic_file(path, "w") as file:
        file.write(text)
