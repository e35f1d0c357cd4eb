"""Train and test one model: the training loop that main.py and the experiments share.

    settings = training_for("spark_baseline")            # model.TRAINING's, over Training's defaults
    network, result = train_and_evaluate("spark_baseline", dataset, settings, seed=0)

train_and_evaluate is five steps, which an experiment can also call one by one (to freeze
layers between two fits, say): build_model, compile_model, fit, recompute_batch_norm and evaluate.

A run is reproducible and survives interruptions:
- `seed` fixes everything random: the initial weights, dropout, augmentation, and the
  order of the training images, which depends on (seed, epoch) only;
- with a `checkpoint_dir`, the complete state after each epoch (weights, optimizer,
  random generators, early stopping, history) is saved. A run killed at any moment and
  started again with the same arguments carries on from the last completed epoch, as if
  it had never stopped. When training ends the folder is kept, marked finished: a run
  that stops before its results are written finds the trained model there, and does
  not train again. The caller clears it once its outputs are written (main.py does);
  checkpoint_folder names one folder per distinct run. Each state is saved with the
  SHA-256 of its files: a damaged, partial or foreign one raises a CheckpointError
  rather than resume. hold_checkpoint keeps a second run out of a folder in use;
- a NaN or infinite loss stops training at once with a TrainingError saying where.
"""
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import inspect
import json
import math
import os
import platform
import re
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from data import atomic_file
from model import TRAINING, get_model

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
# What a trained batch-norm layer normalises with: "recomputed", its inputs' mean and variance
# over the training images once training ends (recompute_batch_norm); "moving", the moving
# averages Keras keeps while training (momentum 0.99), as the tutorials had them.
BATCH_NORM_STATISTICS = ["recomputed", "moving"]
RECOMPUTE_IMAGES = 2_000  # training images the statistics are recomputed on: plenty for a mean per channel
# Images per step when a split is scored (Keras's default, named for uneven_batches).
EVALUATION_BATCH = 32
LOCK_FILE = "lock"  # in a checkpoint folder: see hold_checkpoint
DATASET_MEMBER = "improve_your_network.json"  # in a saved .keras file: the dataset it was trained on
# The project's modules that build and train a model: editing one starts a checkpointed run afresh.
SOURCES = [Path(__file__).with_name(name) for name in ("data.py", "model.py", "train.py")]


class TrainingError(Exception):
    """Training cannot go on; the message says why."""


class CheckpointError(TrainingError):
    """A saved checkpoint that cannot be resumed: damaged, partial, or not written by Checkpoint."""


class SettingError(ValueError):
    """A training setting that does not exist, or a value it cannot take; the message names it."""


@dataclass(frozen=True)
class Training:
    """How a model trains: every setting, with its default.

    model.TRAINING gives, per model, the settings that differ from these (training_for);
    `settings.replace(epochs=3)` is a copy with some changed. An unknown setting, or a value
    a setting cannot take, raises a SettingError naming it.
    """
    optimizer: object = "adam"  # a name in OPTIMIZERS, or a function returning a fresh optimizer
    learning_rate: object = 0.001  # a number, or a keras.optimizers.schedules.LearningRateSchedule
    batch_size: int = 128
    epochs: int = 10  # at most, with early stopping
    patience: int = None  # early stopping: epochs without a lower validation loss; None: off
    loss: object = "sparse_categorical_crossentropy"  # a Keras loss name, or a function
    label_smoothing: float = 0.0  # with integer labels: see SmoothedCrossentropy
    one_cycle: bool = False  # warm the learning rate up to its peak, then anneal it to 0 by the last epoch
    optimizer_options: dict = field(default_factory=dict)  # e.g. momentum=0.9, clipnorm=1.0
    callbacks: tuple = ()  # functions, each returning a fresh Keras callback
    precision: str = "float32"  # one of PRECISIONS
    batch_norm_statistics: str = "recomputed"  # one of BATCH_NORM_STATISTICS: what batch norm uses once trained
    steps_per_execution: int = None  # training steps per call into the compiled step; None: default_steps_per_execution()

    def __post_init__(self):
        def refuse(name, needs):
            raise SettingError(f"training setting {name}: {needs}, got {getattr(self, name)!r}")

        def positive_int(name, optional=False):
            value = getattr(self, name)
            if not (optional and value is None) and not (type(value) is int and value > 0):
                refuse(name, "must be a positive integer" + (" or None" if optional else ""))

        if not (callable(self.optimizer) or self.optimizer in OPTIMIZERS):
            refuse("optimizer", f"must be one of {', '.join(OPTIMIZERS)}, or a function returning an optimizer")
        if not (isinstance(self.learning_rate, keras.optimizers.schedules.LearningRateSchedule)
                or (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0)):
            refuse("learning_rate", "must be a positive number or a learning-rate schedule")
        positive_int("batch_size")
        positive_int("epochs")
        positive_int("patience", optional=True)
        positive_int("steps_per_execution", optional=True)
        if not callable(self.loss):
            try:
                keras.losses.get(self.loss)
            except (ValueError, TypeError):
                refuse("loss", "must be a Keras loss name or a function")
        if not (isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1):
            refuse("label_smoothing", "must be at least 0 and below 1")
        if not isinstance(self.one_cycle, bool):
            refuse("one_cycle", "must be True or False")
        if not isinstance(self.optimizer_options, dict):
            refuse("optimizer_options", "must be a dict of the optimizer's keyword arguments")
        if not (isinstance(self.callbacks, (list, tuple)) and all(map(callable, self.callbacks))):
            refuse("callbacks", "must be a list of functions, each returning a callback")
        object.__setattr__(self, "callbacks", tuple(self.callbacks))  # frozen: a list would not be
        if self.precision not in PRECISIONS:
            refuse("precision", f"must be one of {', '.join(PRECISIONS)}")
        if self.batch_norm_statistics not in BATCH_NORM_STATISTICS:
            refuse("batch_norm_statistics", f"must be one of {', '.join(BATCH_NORM_STATISTICS)}")

    def replace(self, **changes):
        """A copy with `changes`; an unknown setting is refused, with the known ones listed."""
        known = [setting.name for setting in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise SettingError(f"unknown training setting {', '.join(unknown)}: the settings are {', '.join(known)}")
        return dataclasses.replace(self, **changes)

    def __str__(self):
        """The settings that differ from the defaults, and always the four every run has."""
        default = Training()
        shown = [setting.name for setting in dataclasses.fields(self)
                 if setting.name in ("optimizer", "learning_rate", "batch_size", "epochs")
                 or getattr(self, setting.name) != getattr(default, setting.name)]
        return ", ".join(f"{name}={describe(getattr(self, name))}" for name in shown)


def training_for(model):
    """How `model` (a name in model.MODELS or a builder) trains: its model.TRAINING settings, if any,
    over Training's defaults."""
    return Training().replace(**TRAINING.get(model, {}))


def train_and_evaluate(model, dataset, settings, seed=0, hyperparameters=None,
                       checkpoint_dir=None, verbose=1, log_dir=None):
    """Build, train and test one model; return it with a dict of its results (see evaluate).

    model: a name in model.MODELS, or a function (input_shape, num_classes, **hyperparameters).
    settings: a Training.
    log_dir: a folder for TensorBoard's event files (see fit), or None.
    """
    network, training = train(model, dataset, settings, seed, hyperparameters, checkpoint_dir, verbose, log_dir)
    return network, evaluate(network, dataset, training, name=model_name(model))


def train(model, dataset, settings, seed=0, hyperparameters=None, checkpoint_dir=None, verbose=1, log_dir=None):
    """Build and train one model, without reading the test split (train_and_evaluate's first
    half): return it with fit's dict of how it went."""
    seed_everything(seed)
    network = build_model(model, dataset, settings.precision, hyperparameters)
    if verbose:
        network.summary()
    compile_model(network, settings, len(dataset.x_train))
    training = fit(network, dataset, settings, seed, checkpoint_dir, verbose, log_dir)
    if settings.batch_norm_statistics == "recomputed":
        recompute_batch_norm(network, dataset.x_train[:RECOMPUTE_IMAGES])
    return network, training


def build_model(model, dataset, precision="float32", hyperparameters=None):
    """The model, its layers computing in `precision`: a Keras dtype policy such as "mixed_bfloat16"."""
    default = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # layers take the policy in force when they are made
    try:
        return get_model(model, dataset.input_shape, dataset.num_classes, **(hyperparameters or {}))
    finally:
        keras.config.set_dtype_policy(default)


def compile_model(network, settings, train_images):
    """Compile `network` with the optimizer and loss of `settings`, for `train_images` images an epoch."""
    loss = keras.losses.get(settings.loss)
    if settings.label_smoothing:
        loss = SmoothedCrossentropy(settings.label_smoothing)
    metrics = ["accuracy"]
    if has_weight_penalty(network):
        # The loss once more as a metric: the data term alone, without the weight penalties
        # (L2, ...) that the loss includes. Early stopping watches this one: a penalty that
        # grows while the fit to the data improves is not overfitting.
        metrics.append(DataLoss(loss))
    steps = settings.epochs * math.ceil(train_images / settings.batch_size)
    network.compile(optimizer=make_optimizer(settings, steps), loss=loss, metrics=metrics,
                    steps_per_execution=settings.steps_per_execution or default_steps_per_execution())


def fit(network, dataset, settings, seed=0, checkpoint_dir=None, verbose=0, log_dir=None):
    """Train a compiled `network` on the training split, validating on the validation split after
    every epoch; return how it went (see evaluate). With `settings.patience`, stop once the
    validation data loss has not improved for that many epochs and keep the best epoch's weights.
    With `log_dir`, Keras's TensorBoard callback writes each epoch's losses and accuracies there
    (`tensorboard --logdir` reads them; a resumed run carries on in the same folder)."""
    batches = ShuffledBatches(dataset.x_train, dataset.y_train, settings.batch_size, seed)
    early_stopping = None
    if settings.patience:
        early_stopping = keras.callbacks.EarlyStopping(
            monitor="val_data_loss" if has_weight_penalty(network) else "val_loss", mode="min",
            patience=settings.patience, restore_best_weights=True)
    checkpoint = Checkpoint(checkpoint_dir, early_stopping)  # after EarlyStopping: it restores its state
    create_training_variables(network, dataset)
    if checkpoint.initial_epoch and verbose:
        print(f"Resuming after epoch {checkpoint.initial_epoch} from {checkpoint_dir}"
              + (", where training had ended" if checkpoint.finished else ""))
    # A finished run has no epoch left: Keras only restores its state (early stopping's best weights).
    first_epoch = settings.epochs if checkpoint.finished else checkpoint.initial_epoch
    start = time.perf_counter()
    network.fit(batches.for_fit(), shuffle=False,  # `batches` shuffles itself, reproducibly
                epochs=settings.epochs, initial_epoch=first_epoch,
                validation_data=(dataset.x_val, dataset.y_val), validation_batch_size=EVALUATION_BATCH, verbose=verbose,
                callbacks=[batches.reshuffle, StopOnNaN(), *[make() for make in settings.callbacks],
                           *filter(None, [early_stopping, log_dir and tensorboard(log_dir)]), checkpoint])
    train_seconds = time.perf_counter() - start + checkpoint.seconds_before

    history = {key: [logs[key] for logs in checkpoint.history] for key in checkpoint.history[0]}
    epochs_run = len(checkpoint.history)
    # With early stopping the best epoch's weights are back in place: report that epoch.
    best = early_stopping.best_epoch if early_stopping else epochs_run - 1
    return {"epochs_run": epochs_run, "best_epoch": best + 1, "train_seconds": round(train_seconds, 1),
            "train_accuracy": history["accuracy"][best],  # running mean while training
            "history": history}  # per epoch: loss, accuracy (data_loss with a weight penalty), and val_ of each


def tensorboard(log_dir):
    """Keras's TensorBoard callback, writing epoch summaries only (no graph, no per-batch steps)."""
    return keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=0, write_graph=False,
                                       write_steps_per_second=False, update_freq="epoch")


def tensorboard_missing():
    """Why --tensorboard cannot work here, or None: Keras writes TensorBoard's files with
    TensorFlow's tf.summary, whatever the backend, and the viewer is the tensorboard package."""
    import importlib.util
    missing = [name for name in ("tensorflow", "tensorboard") if importlib.util.find_spec(name) is None]
    if missing:
        return (f"TensorBoard's event files are written with TensorFlow and read with TensorBoard; "
                f"this Python has no {' or '.join(missing)}: pip install {' '.join(missing)}")
    return None


def create_training_variables(network, dataset):
    """Create the optimizer's and the metrics' variables of a compiled `network` now.

    Keras on TensorFlow creates them while it traces the first training step, and TensorFlow
    traces a step that creates variables twice: made here, the step is traced once, and training
    starts sooner (a third sooner for spark_finetuned on a CPU). What is computed does not change.
    """
    images, labels = dataset.x_train[:1], dataset.y_train[:1]
    network.optimizer.build(network.trainable_variables)
    predictions = network(images)  # training=False: no dropout or augmentation, no random draw
    network.compute_loss(images, labels, predictions)
    network.compute_metrics(images, labels, predictions, sample_weight=None)
    network.reset_metrics()  # forget the image the metrics were made on


def recompute_batch_norm(network, images, batch_size=500):
    """Set each batch-norm layer's moving mean and variance to the mean and variance of its
    inputs over `images` (train_and_evaluate: RECOMPUTE_IMAGES training images), as the trained
    network computes them.

    Keras keeps moving averages while training, each step weighing 1% (momentum 0.99): after a
    few hundred steps they still carry the untrained start and the weights of earlier steps, and
    the error compounds from layer to layer. fast_cnn, 306 steps on notMNIST, then scored 32% on
    the validation split against 94% with that split's own statistics (results/batchnorm.md, seed
    0). The layers are done in the order they compute, so each sees inputs normalised by the
    statistics already recomputed, and in inference mode: no dropout, no augmentation. Only the
    network's own layers are done: a batch-norm layer inside a nested model keeps its averages.
    """
    for layer in network.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        inputs_of = layer_inputs(network, layer)
        sums, squares, count = 0.0, 0.0, 0
        for start in range(0, len(images), batch_size):
            batch = np.moveaxis(keras.ops.convert_to_numpy(inputs_of(images[start:start + batch_size])),
                                layer.axis, -1)
            values = batch.reshape(-1, batch.shape[-1]).astype("float64")  # one column per channel
            sums, squares, count = sums + values.sum(0), squares + (values ** 2).sum(0), count + len(values)
        mean = sums / count
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign((squares / count - mean ** 2).astype(layer.moving_variance.dtype))


def layer_inputs(network, layer):
    """A function from images to what `layer` of `network` receives from them, in inference mode
    (called eagerly: a few batches do not pay for tracing a graph)."""
    if isinstance(network, keras.Sequential):  # one made without an Input has no graph to cut
        before = network.layers[:network.layers.index(layer)]
        return lambda images: functools.reduce(lambda x, earlier: earlier(x, training=False), before, images)
    inputs_of = keras.Model(network.input, layer.input)
    return lambda images: inputs_of(images, training=False)


def evaluate(network, dataset, training=None, name=None, test=True):
    """The results of a trained `network`: its name (default: the Keras model's) and size, how it
    trained (fit's dict, if any), and its accuracy and loss on the validation and test splits.
    The test split is read here only; test=False leaves it unread (a run that makes a choice)."""
    val = network.evaluate(dataset.x_val, dataset.y_val, batch_size=EVALUATION_BATCH, verbose=0, return_dict=True)
    result = {"name": name or network.name, "params": network.count_params(), **(training or {}),
              "val_accuracy": val["accuracy"], "val_loss": val["loss"]}
    if test:
        test = network.evaluate(dataset.x_test, dataset.y_test, batch_size=EVALUATION_BATCH, verbose=0,
                                return_dict=True)
        result.update(test_accuracy=test["accuracy"], test_loss=test["loss"])
    return result


def model_name(model):
    """A name in model.MODELS as it is; a builder function by its name."""
    return model if isinstance(model, str) else model.__name__


def has_weight_penalty(network):
    """Whether the loss includes weight penalties (L2, ...), so that it differs from the data loss."""
    return bool(network.losses)


def checkpoint_folder(root, model, dataset, settings, hyperparameters=None, seed=0, devices=1):
    """The folder of one run's checkpoint, under `root`: the same run finds its own again.

    Its name holds a hash of everything that changes what the run computes: the model, its
    hyperparameters, the settings, the seed, the data itself, the number of `devices` it
    trains on in parallel where more than one (see distributed), and the source of the modules
    that build and train it (SOURCES, and the model's own module). Change any of them and the
    run starts afresh instead of resuming a checkpoint made by other code or other data.
    """
    key = [model, hyperparameters, settings, seed] + ([devices] if devices > 1 else [])
    digest = hashlib.sha256(json.dumps(describe(key), sort_keys=True).encode())
    digest.update(dataset.fingerprint().encode())
    sources = set(SOURCES) if isinstance(model, str) else {*SOURCES, Path(inspect.getsourcefile(model))}
    for source in sorted(sources):
        digest.update(source.read_bytes())
    return Path(root) / f"{dataset.name}-{model_name(model)}-seed{seed}-{digest.hexdigest()[:10]}"


def describe(value):
    """`value` as JSON data that is the same from one run to the next: functions and classes by
    module and name (a partial with its arguments, a closure with its values), Keras objects by
    their config. For checkpoint keys and reports."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(key): describe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [describe(item) for item in value]
    if dataclasses.is_dataclass(value):
        return {setting.name: describe(getattr(value, setting.name)) for setting in dataclasses.fields(value)}
    if isinstance(value, functools.partial):
        return {"partial": describe(value.func), "args": describe(value.args), "keywords": describe(value.keywords)}
    if callable(value) and hasattr(value, "__qualname__"):  # a function or a class
        name = f"{value.__module__}.{value.__qualname__}"
        closure = [cell.cell_contents for cell in getattr(value, "__closure__", None) or ()]
        return {"function": name, "closure": describe(closure)} if closure else name
    if hasattr(value, "get_config"):  # a Keras loss, schedule, optimizer, ...
        return {"class": f"{type(value).__module__}.{type(value).__qualname__}", "config": describe(value.get_config())}
    return repr(value)


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
    if callable(settings.optimizer):  # a fresh optimizer for every model, e.g. one with a schedule
        return settings.optimizer()
    learning_rate = settings.learning_rate
    if settings.one_cycle:  # linear warm-up over the first 20% of the steps, cosine decay after
        warmup = round(ONE_CYCLE_WARMUP * steps)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate / 10, decay_steps=steps - warmup, warmup_target=learning_rate, warmup_steps=warmup)
    return OPTIMIZERS[settings.optimizer](learning_rate=learning_rate, **settings.optimizer_options)


def data_parallel_devices():
    """The devices that distributed() trains on: every GPU (or TPU) Keras sees, else every CPU device."""
    return keras.distribution.list_devices()


@contextlib.contextmanager
def distributed(enabled=True):
    """While the block runs, the models built, compiled, trained and scored in it run on all
    data_parallel_devices() (data parallel): each step's batch, Training.batch_size images, is
    split evenly over the devices, each computes the gradients of its share, and their mean
    updates one set of weights, kept the same on every device. Without `enabled`, the block runs
    as it is. Check the batches first with uneven_batches.

    JAX: a keras.distribution.DataParallel is in force for the block, and the step is one
    computation over the whole batch, laid out over the devices: with the same batches it
    computes what one device does, batch norm and random draws included, up to rounding (which
    Adam can amplify: fast_cnn's weights came out up to 19% apart after 6 steps, 4e-6 with SGD).
    TensorFlow: the block runs in a tf.distribute.MirroredStrategy's scope, which runs the
    step on each device's share of the batch: batch-norm layers normalise with their share's
    statistics while training (recompute_batch_norm sets the final ones from whole batches),
    and every device draws the same dropout masks and random shifts for its share, as its
    random generators start from the same state. PyTorch: not supported (SettingError).
    """
    if not enabled:
        yield
        return
    backend = keras.backend.backend()
    if backend == "jax":
        with keras.distribution.DataParallel(devices=data_parallel_devices()).scope():
            yield
    elif backend == "tensorflow":
        with mirrored_strategy(tuple(data_parallel_devices())).scope():
            yield
    else:
        raise SettingError(f"Keras's {backend} backend does not train on several devices here: use JAX or TensorFlow")


@functools.cache
def mirrored_strategy(devices):
    """One MirroredStrategy over `devices` for the whole process. Each strategy numbers its
    all-reduce operations from the same start: a second one made after another had trained a
    model stopped with "Shape mismatch in the collective instance 100", the new model's
    gradients taken for the last one's."""
    import tensorflow as tf
    return tf.distribute.MirroredStrategy([f"/{device}" for device in devices])


def uneven_batches(dataset, batch_size, devices):
    """Why the batches of `dataset` do not split evenly over `devices` devices, or None if they do:
    the training split's, of `batch_size` images, and the validation and test splits', of
    EVALUATION_BATCH, each split's last and smaller batch included.

    JAX's DataParallel cannot split a batch unevenly (jax raises an IndivisibleError);
    TensorFlow's MirroredStrategy does, but then weighs the images of the smaller shares more:
    a last batch of 1 image on 2 devices takes half the step one device would.
    """
    for split, images, batch in [("training", len(dataset.x_train), batch_size),
                                 ("validation", len(dataset.x_val), EVALUATION_BATCH),
                                 ("test", len(dataset.x_test), EVALUATION_BATCH)]:
        if images >= batch and batch % devices:
            return f"a batch of {batch} {split} images does not split evenly over {devices} devices"
        if images % batch % devices:
            return (f"the {images} {split} images, in batches of {batch}, leave a last batch of {images % batch}, "
                    f"which does not split evenly over {devices} devices")
    return None


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
    stopping state, which it does not save, go in latest.json, with the SHA-256 of each file
    of the state: a checkpoint that does not match is refused (read_checkpoint). When training
    ends, latest.json is marked finished; the folder stays until its owner clears it.
    """

    def __init__(self, folder=None, early_stopping=None):
        super().__init__()
        self.folder, self.early_stopping = (Path(folder) if folder else None), early_stopping
        self.history, self.seconds_before, self.saved = [], 0.0, None
        if self.folder:
            self.saved = read_checkpoint(self.folder)
        if self.saved:
            self.history, self.seconds_before = self.saved["history"], self.saved["seconds"]
        self.initial_epoch = len(self.history)
        # Training ran to its end (an early stop included): resuming must not train on.
        self.finished = bool(self.saved and self.saved.get("finished"))

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
        latest["sha256"] = checksums(state)  # now that every file of the state is written
        write_json(self.folder / "latest.json", latest)  # the moment this state becomes the one to resume
        self.saved = latest
        for old in self.folder.glob("epoch-*"):
            if old != state:
                shutil.rmtree(old)

    def on_train_end(self, logs=None):
        if self.folder:  # not called when training fails: only a run that ended is finished
            write_json(self.folder / "latest.json", {**self.saved, "finished": True})


def read_checkpoint(folder):
    """The latest.json of the checkpoint in `folder`, once the state it names is checked against
    its checksums; None if nothing was saved there yet. A damaged, partial or foreign checkpoint
    raises a CheckpointError naming the folder: resuming it would fail, or silently change the result."""
    def damaged(why):
        return CheckpointError(f"the checkpoint in {folder} cannot be resumed: {why}")

    latest = folder / "latest.json"
    if not latest.exists():
        # Without latest.json, only the first epoch's state can be there: a run killed while saving it.
        later = sorted(state.name for state in folder.glob("epoch-*") if state.name != "epoch-0001")
        if later:
            raise damaged(f"it has {later[-1]} but no latest.json")
        return None
    try:
        saved = json.loads(latest.read_text())
    except ValueError:  # cut short, or not JSON at all
        raise damaged("latest.json is not valid JSON") from None
    fields = {"state": str, "sha256": dict, "history": list, "seconds": (int, float), "seeds": list}
    if not (isinstance(saved, dict) and all(isinstance(saved.get(key), kind) for key, kind in fields.items())
            and re.fullmatch(r"epoch-\d{4}", saved["state"])):  # a state folder's name, nothing outside
        raise damaged("latest.json was not written by this code")
    state = folder / saved["state"]
    if not state.is_dir():
        raise damaged(f"{saved['state']}, which latest.json names, is missing")
    expected, found = saved["sha256"], checksums(state)
    wrong = sorted(name for name in expected.keys() | found.keys() if expected.get(name) != found.get(name))
    if wrong:
        raise damaged(f"the files of {state.name} do not match their checksums in latest.json: {', '.join(wrong)}")
    return saved


def checksums(state):
    """The SHA-256 of each file in a saved `state` folder, by name."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(state.iterdir())}


@contextlib.contextmanager
def hold_checkpoint(folder):
    """Keep the checkpoint `folder` for this process while the block runs: another run that asks
    for it meanwhile gets a TrainingError, rather than resume a state that is still being written.
    On leaving, a folder with nothing saved in it is removed.

    The lock is fcntl.flock's (POSIX), on a file in the folder: the system lets go of it when the
    process ends, however it ends, so a killed run leaves no stale lock behind.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise TrainingError(f"{folder} is in use by another run (pid {lock.read().strip() or '?'}): "
                                f"wait for it to end, or stop it") from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")  # for the message above, in the other run
        lock.flush()
        try:
            yield
        finally:
            if [path.name for path in folder.iterdir()] == [LOCK_FILE]:
                shutil.rmtree(folder)


def clear_checkpoint(folder):
    """Delete what is saved in the checkpoint `folder`, but not its lock: the next fit there starts afresh."""
    for path in Path(folder).iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != LOCK_FILE:
            path.unlink()


def seed_states(model):
    """The positions of the model's random generators (dropout, augmentation)."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def save_model(network, path, dataset):
    """Save `network` as the .keras file `path`, which also records the `dataset` it was trained
    on (see saved_dataset), so that predict.py names the right classes. Written whole or not at all."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    partial = Path(path).with_name(f".{Path(path).stem}.partial.keras")  # Keras insists on the suffix
    try:
        network.save(partial)
        with zipfile.ZipFile(partial, "a") as archive:  # a .keras file is a zip: Keras reads only its own members
            archive.writestr(DATASET_MEMBER, json.dumps({"dataset": dataset}))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)  # after a failure: no half-written file left behind


def saved_dataset(path):
    """The dataset that the model saved in `path` was trained on; None for a file saved without one."""
    with zipfile.ZipFile(path) as archive:
        if DATASET_MEMBER not in archive.namelist():
            return None
        return json.loads(archive.read(DATASET_MEMBER))["dataset"]


def write_json(path, content):
    write_text(path, json.dumps(content, indent=2))


def write_text(path, text):
    with atomic_file(path, "w") as file:
        file.write(text)
