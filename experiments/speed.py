"""Speed: how fast each model trains, what its augmentation costs, and how soon the fast recipe reaches 99.5%.

    python -m experiments speed                 # everything: results/speed-cpu.md / speed-gpu.md
    python -m experiments speed --seeds 1 --budgets 4 8
    python -m experiments speed --parts warps   # one measurement: results/speed-cpu-warps.md
    python -m experiments speed --tiny          # a few hundred images: a smoke test

Six measurements on MNIST, in one process, for the backend and device it runs on (--parts
picks some of the first five):

1. throughput. For every model in model.MODELS: seconds per training step through this
   project's training loop (train.train_and_evaluate: its shuffled batches and callbacks),
   with and without augmentation, as a ratio to a plain reference: model.fit on in-memory
   arrays, the same model without augmentation. Each timing is the fastest of REPEATS
   epochs of STEPS steps, after one more epoch that compiles: on a shared machine, the
   fastest is the one least disturbed. Only training steps are timed: our loop validates
   after each epoch, the reference does not.
2. augmentation: what each augmentation costs, as a share of a training step of the network
   it feeds: this project's RandomShift (Spark's shifts) and RandomAffine ("Beating MNIST"),
   and Keras's stock RandomTranslation for comparison. The network with and without it train
   one epoch each in turn, PAIRS times; each pair's ratio compares epochs a few seconds
   apart, so a machine whose speed drifts slows both alike. They are fed as our training
   loop feeds a model (train.ShuffledBatches.for_fit: on TensorFlow, without the tf.data
   autotuning that runs some epochs on one core on this project's 2-core CPU). The median
   pair counts.
3. warps: model.py's RandomShift and RandomAffine, which move images with
   keras.ops.image.affine_transform, against the hand-written code they replaced
   (ShiftByMatrices, AffineByGathers, below): the same draws and images, in front of the same
   network, alternating as in 2.
4. options: speed options, on the Spark tutorial's 3-model ensemble with its shifts: more
   training steps per call into the compiled step, mixed precision, a 4x larger batch, and
   all three, against the tutorial's settings. One model.fit per option on the same images,
   trained one epoch each in turn, PAIRS times (as in 2.); each round's speed-ups compare
   epochs seconds apart, and the median round counts. What mixed precision and the larger
   batch do to accuracy: results/fast-speed-options.md.
5. accuracy: time to accuracy of a recipe (default: fast_cnn with its TRAINING settings): one
   full training run per epoch budget (the one-cycle schedule fits the budget), each scored
   on the test set once it is over. The time is the whole call: model building, compilation,
   training and scoring; loading the data is timed apart. The test set only reports: it
   stops nothing and chooses nothing. Median and range over the seeds.
6. Peak memory: the process's resident set on the host; the device's, where the backend says.

A report of only some parts is named after them: results/speed-cpu-warps.md, say.
"""
import argparse
import resource
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
from keras import ops

from data import DataError, load_dataset
from experiments.ladder import AUGMENTATION, ladder_augmentation, ladder_dropout
from experiments.runner import MOVING_BATCH_NORM, RESULTS
from main import positive_int
from model import MODELS, RandomAffine, RandomShift, get_model, options
from train import (ShuffledBatches, build_model, compute_device, describe_device, train_and_evaluate,
                   training_for, write_json, write_text)

STEPS = 30  # training steps per timed epoch
REPEATS = 3  # timed epochs per measurement, after one that compiles: the fastest one counts
PAIRS = 7  # alternating epochs (with, without) per augmentation: the median ratio counts
BATCH_SIZE = 128  # for every throughput measurement, as the tutorials train
RECIPE = "fast_cnn"
BUDGETS = [2, 4, 6]  # epochs: one training run each
TARGETS = [99.0, 99.4, 99.5, 99.6, 99.7]  # test accuracy, percent
OPTIONS_MODEL = "spark_finetuned"
PARTS = ["throughput", "augmentation", "warps", "options", "accuracy"]  # the report's sections, in order
SPEED_OPTIONS = [  # (label, what changes): one option at a time, then all of them
    ("the tutorial's: batch 128, float32, 1 step per call", {}),
    ("16 steps per call", {"steps_per_execution": 16}),
    ("mixed_bfloat16", {"precision": "mixed_bfloat16"}),
    ("batch 512", {"batch_size": 512}),
    ("batch 512, mixed_bfloat16, 16 steps per call",
     {"steps_per_execution": 16, "precision": "mixed_bfloat16", "batch_size": 512}),
]


def main(argv):
    """argv: the arguments after `python -m experiments speed`."""
    parser = argparse.ArgumentParser(prog="python -m experiments speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(MODELS), default=RECIPE, help="default: %(default)s")
    parser.add_argument("--budgets", type=positive_int, nargs="+", default=BUDGETS, metavar="EPOCHS",
                        help="epoch budgets to time (default: %(default)s)")
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeds per budget (default: 3)")
    parser.add_argument("--steps", type=positive_int, default=STEPS, help="steps per timing (default: %(default)s)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS,
                        help="measure only these (default: all); the report is then speed-DEVICE-PARTS.md")
    parser.add_argument("--tiny", action="store_true", help="500 images, 2 steps, 1 epoch, 1 seed: for the tests")
    parser.add_argument("--data-dir", help="folder with the dataset files (default: $DATA_DIR, ...)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the report (default: results/)")
    args = parser.parse_args(argv)
    if not args.out.is_dir():
        parser.error(f"argument --out: {args.out} is not a folder")
    if args.tiny:
        args.budgets, args.seeds, args.steps = [1], 1, 2  # and REPEATS epochs of each timing

    device = describe_device()
    print(f"Speed on {device}, Keras {keras.__version__}, backend {keras.backend.backend()}")
    try:
        start = time.perf_counter()
        dataset = load_dataset("mnist", args.data_dir, limit=500 if args.tiny else None)
        load_seconds = time.perf_counter() - start
    except DataError as error:
        sys.exit(f"error: {error}")

    pairs = 2 if args.tiny else PAIRS
    report = {"device": device, "backend": keras.backend.backend(), "keras": keras.__version__,
              "date": time.strftime("%Y-%m-%d"), "command": shlex.join(["python", "-m", "experiments", "speed", *argv]),
              "data_load_seconds": round(load_seconds, 1), "train_images": len(dataset.x_train),
              "steps_timed": args.steps, "batch_size": BATCH_SIZE}
    if "throughput" in args.parts:
        report["throughput"] = [measure(*contender, dataset, args.steps) for contender in contenders()]
    if "augmentation" in args.parts:
        report["augmentation_cost"] = [augmentation_cost(*each, dataset, args.steps, pairs) for each in augmentations()]
    if "warps" in args.parts:
        report["warps"] = [warp_cost(*each, dataset, args.steps, pairs) for each in warps()]
    if "options" in args.parts:
        report["options_model"] = OPTIONS_MODEL
        report["speed_options"] = speed_options(dataset, args.steps, pairs)
    report["peak_memory_mib"] = {"before_accuracy_runs": peak_memory()}
    if "accuracy" in args.parts:
        report["recipe"], report["recipe_settings"] = args.recipe, str(training_for(args.recipe))
        report["runs"] = time_to_accuracy(args.recipe, dataset, args.budgets, args.seeds)
        report["time_to_accuracy"] = summarise(report["runs"])
        report["peak_memory_mib"]["at_end"] = peak_memory()
    markdown = render(report)
    print("\n" + markdown)
    name = "-".join(["speed", "tiny" if args.tiny else compute_device()[0], *([] if args.parts == PARTS else args.parts)])
    write_json(args.out / f"{name}.json", report)
    write_text(args.out / f"{name}.md", markdown)
    print(f"Wrote {args.out / name}.json and .md")


def contenders():
    """(label, model, hyperparameters) to time: each model, with its augmentation on and off."""
    for name in MODELS:
        if "augment" in options(name):
            yield f"{name} + augmentation", name, {"augment": True}
            yield name, name, {"augment": False}
        else:
            yield name, name, {}


def augmentations():
    """(augmentation, the network it feeds, (model, hyperparameters) with it, and without it)."""
    without_shifts = ("spark_finetuned", {"augment": False})
    stock_shifts = augmented(keras.layers.RandomTranslation, "spark_finetuned", 0.1, 0.1, fill_mode="constant")
    return [("RandomShift (model.py): Spark's shifts", "spark_finetuned", ("spark_finetuned", {}), without_shifts),
            ("RandomShift (model.py)", "fast_cnn", ("fast_cnn", {}), ("fast_cnn", {"augment": False})),
            ("RandomAffine (model.py): rotation, shear, zoom", "ladder_dropout", (ladder_augmentation, {}),
             (ladder_dropout, {})),
            ("keras.layers.RandomTranslation: Spark's shifts, stock", "spark_finetuned", (stock_shifts, {}),
             without_shifts)]


def warps():
    """(this project's warp, the network it feeds, (model, hyperparameters) with it, as model.py does
    it with keras.ops.image.affine_transform, and with the hand-written version it replaced)."""
    return [(layer.__name__, network, (augmented(layer, network, **options), {}),
             (augmented(by_hand, network, **options), {}))
            for layer, by_hand, network, options in [
                (RandomShift, ShiftByMatrices, "fast_cnn", {"factor": 0.1}),
                (RandomShift, ShiftByMatrices, "spark_finetuned", {"factor": 0.1}),
                (RandomAffine, AffineByGathers, "ladder_dropout", AUGMENTATION)]]


def augmented(layer, network, *args, **kwargs):
    """A builder: `layer(*args, **kwargs)` in front of `network` (a name in MODELS, or ladder_dropout),
    the network built without its own augmentation."""
    def build(input_shape, num_classes):
        inner = ladder_dropout(input_shape, num_classes) if network == "ladder_dropout" else \
            get_model(network, input_shape, num_classes, augment=False)
        return keras.Sequential([keras.Input(shape=input_shape), layer(*args, **kwargs), inner])
    build.__name__ = f"{layer.__name__}_then_{network}"
    return build


class ShiftByMatrices(RandomShift):
    """RandomShift's draws, moved by two batched products with shifted identity matrices: the
    hand-written shift this project used before keras.ops.image.affine_transform, for comparison.
    The same images (tests/test_experiments.py)."""

    def move(self, images, dy, dx):
        rows, cols = shift_matrices(dy, images.shape[1], images.dtype), shift_matrices(dx, images.shape[2], images.dtype)
        images = ops.einsum("bij,bjwc->biwc", rows, images)  # move rows down by dy
        return ops.einsum("bkw,biwc->bikc", cols, images)  # move columns right by dx


def shift_matrices(shifts, size, dtype):
    """One (size x size) matrix per shift s: row i interpolates source pixel i - s."""
    positions = ops.arange(size, dtype="float32")
    source = positions[None, :, None] - ops.cast(shifts, "float32")[:, None, None]
    return ops.cast(ops.relu(1.0 - ops.abs(positions[None, None, :] - source)), dtype)


class AffineByGathers(RandomAffine):
    """RandomAffine's draws, warped by four gathers (bilinear, nearest edge pixel): the hand-written
    warp this project used before keras.ops.image.affine_transform, for comparison. The same
    images, to rounding (tests/test_experiments.py)."""

    def warp(self, images, angle, shear, zoom_rows, zoom_cols):
        batch, height, width, channels = ops.shape(images)[0], *images.shape[1:]
        centre_row, centre_col = (height - 1) / 2, (width - 1) / 2  # output (row, col) reads map @ (row, col)
        rows, cols = np.meshgrid(np.arange(height) - centre_row, np.arange(width) - centre_col, indexing="ij")
        rows, cols = (ops.convert_to_tensor(x.reshape(1, -1), "float32") for x in (rows, cols))
        source_row = zoom_rows * ops.cos(angle) * rows - zoom_cols * ops.sin(angle + shear) * cols + centre_row
        source_col = zoom_rows * ops.sin(angle) * rows + zoom_cols * ops.cos(angle + shear) * cols + centre_col
        source_row, source_col = ops.clip(source_row, 0, height - 1), ops.clip(source_col, 0, width - 1)
        row_0, col_0 = ops.floor(source_row), ops.floor(source_col)
        row_weight, col_weight = (source_row - row_0)[..., None], (source_col - col_0)[..., None]
        row_0, col_0 = ops.cast(row_0, "int32"), ops.cast(col_0, "int32")
        row_1, col_1 = ops.minimum(row_0 + 1, height - 1), ops.minimum(col_0 + 1, width - 1)
        pixels = ops.reshape(ops.cast(images, "float32"), (batch, height * width, channels))

        def at(row, col):
            index = ops.broadcast_to((row * width + col)[..., None], (batch, height * width, channels))
            return ops.take_along_axis(pixels, index, axis=1)

        top = at(row_0, col_0) * (1 - col_weight) + at(row_0, col_1) * col_weight
        bottom = at(row_1, col_0) * (1 - col_weight) + at(row_1, col_1) * col_weight
        out = top * (1 - row_weight) + bottom * row_weight
        return ops.cast(ops.reshape(out, (batch, height, width, channels)), images.dtype)


class EpochTimer(keras.callbacks.Callback):
    """Seconds of each epoch's training steps. Validation, which fit runs before the epoch
    ends (our loop validates, the plain reference does not), is not a training step: the
    clock stops where it begins."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_test_begin(self, logs=None):
        self.stop()

    def on_epoch_end(self, epoch, logs=None):
        self.stop()

    def stop(self):
        if self.start is None:  # stopped already, when validation began
            return
        # Reading a value the last step wrote waits for the device (JAX dispatches asynchronously).
        keras.ops.convert_to_numpy(self.model.optimizer.iterations)
        self.seconds.append(time.perf_counter() - self.start)
        self.start = None

    def fastest(self):
        return min(self.seconds[1:])  # the first epoch compiles


def measure(label, model, hyperparameters, dataset, steps):
    """Seconds per step of `model` in train_and_evaluate and in a plain model.fit."""
    images = steps * BATCH_SIZE
    small = replace(dataset, x_train=dataset.x_train[:images], y_train=dataset.y_train[:images],
                    x_val=dataset.x_val[:BATCH_SIZE], y_val=dataset.y_val[:BATCH_SIZE],  # one batch each:
                    x_test=dataset.x_test[:BATCH_SIZE], y_test=dataset.y_test[:BATCH_SIZE])  # barely timed
    timer = EpochTimer()
    settings = training_for(model).replace(batch_size=BATCH_SIZE, epochs=1 + REPEATS, patience=None,
                                           callbacks=[lambda: timer])
    train_and_evaluate(model, small, settings, hyperparameters=hyperparameters, verbose=0)
    ours = timer.fastest() / steps

    plain = get_model(model, dataset.input_shape, dataset.num_classes,
                      **{**hyperparameters, **({"augment": False} if "augment" in hyperparameters else {})})
    plain.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    plain.fit(small.x_train, small.y_train, batch_size=BATCH_SIZE, epochs=1 + REPEATS, verbose=0, callbacks=[timer])
    reference = timer.fastest() / steps
    steps_per_epoch = int(np.ceil(len(dataset.x_train) / BATCH_SIZE))
    row = {"model": label, "ms_per_step": 1000 * ours, "steps_per_second": 1 / ours,
           "seconds_per_epoch": ours * steps_per_epoch, "reference_ms_per_step": 1000 * reference,
           "ratio_to_reference": ours / reference}
    print(f"{label}: {row['ms_per_step']:.1f} ms/step, {row['ratio_to_reference']:.2f}x plain fit", flush=True)
    return row


def augmentation_cost(augmentation, network, with_it, without_it, dataset, steps, pairs):
    """The augmentation's extra time per training step, as a share of the network's own step."""
    with_ms, without_ms = alternating_pair(with_it, without_it, dataset, steps, pairs)
    row = {"augmentation": augmentation, "network": network, "pairs": pairs,
           "ms_per_step_with": float(np.median(with_ms)), "ms_per_step_without": float(np.median(without_ms)),
           "share": float(np.median(with_ms / without_ms)) - 1,
           "share_range": [float(min(with_ms / without_ms)) - 1, float(max(with_ms / without_ms)) - 1]}
    print(f"{augmentation} on {network}: {row['share']:+.0%} of a step", flush=True)
    return row


def warp_cost(warp, network, with_keras, by_hand, dataset, steps, pairs):
    """A training step with the warp as model.py does it (keras.ops.image.affine_transform) against
    one with the hand-written version."""
    keras_ms, hand_ms = alternating_pair(with_keras, by_hand, dataset, steps, pairs)
    row = {"warp": warp, "network": network, "pairs": pairs, "ms_per_step_affine_transform": float(np.median(keras_ms)),
           "ms_per_step_by_hand": float(np.median(hand_ms)), "ratio": float(np.median(keras_ms / hand_ms)),
           "ratio_range": [float(min(keras_ms / hand_ms)), float(max(keras_ms / hand_ms))]}
    print(f"{warp} on {network}: affine_transform takes {row['ratio']:.2f}x the hand-written step", flush=True)
    return row


def alternating_pair(first, second, dataset, steps, pairs):
    """Milliseconds per training step of two (model, hyperparameters), one epoch each in turn, `pairs`
    times (alternating_epochs): two arrays of `pairs` values."""
    images = steps * BATCH_SIZE
    models = []
    for model, hyperparameters in (first, second):
        models.append(get_model(model, dataset.input_shape, dataset.num_classes, **hyperparameters))
        models[-1].compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    seconds = alternating_epochs(models, [BATCH_SIZE] * 2, dataset.x_train[:images], dataset.y_train[:images], pairs)
    return 1000 * seconds.T / steps


def speed_options(dataset, steps, rounds):
    """OPTIONS_MODEL's time per image with each of SPEED_OPTIONS, and its speed-up over the first."""
    images = steps * BATCH_SIZE
    models, batch_sizes = [], []
    for _, changes in SPEED_OPTIONS:
        models.append(build_model(OPTIONS_MODEL, dataset, changes.get("precision", "float32"), {}))
        models[-1].compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                           steps_per_execution=changes.get("steps_per_execution", 1))
        batch_sizes.append(changes.get("batch_size", BATCH_SIZE))
    seconds = alternating_epochs(models, batch_sizes, dataset.x_train[:images], dataset.y_train[:images], rounds)
    speed_ups = seconds[:, :1] / seconds  # against the tutorial's settings, in the same round
    rows = []
    for (label, changes), per_round, speed_up in zip(SPEED_OPTIONS, seconds.T, speed_ups.T):
        per_image = float(np.median(per_round)) / images
        rows.append({"option": label, "changes": changes, "rounds": rounds, "us_per_image": 1e6 * per_image,
                     "seconds_per_epoch": per_image * len(dataset.x_train), "speed_up": float(np.median(speed_up)),
                     "speed_up_range": [float(min(speed_up)), float(max(speed_up))]})
        print(f"{OPTIONS_MODEL}, {label}: {rows[-1]['us_per_image']:.0f} us per image, "
              f"{rows[-1]['speed_up']:.2f}x", flush=True)
    return rows


def alternating_epochs(models, batch_sizes, x, y, rounds):
    """Seconds per epoch: an array (rounds, models). Each round trains each model one epoch in
    turn, so epochs compared within a round are seconds apart, and a machine whose speed
    drifts slows them alike. Each model's first epoch compiles and is not timed."""
    feeds = [ShuffledBatches(x, y, batch_size, seed=0).for_fit() for batch_size in batch_sizes]
    for model, feed in zip(models, feeds):
        model.fit(feed, shuffle=False, epochs=1, verbose=0)
    timer, seconds = EpochTimer(), []
    for _ in range(rounds):
        for model, feed in zip(models, feeds):
            model.fit(feed, shuffle=False, epochs=1, verbose=0, callbacks=[timer])
            seconds.append(timer.seconds[0])
    return np.array(seconds).reshape(rounds, len(models))


def time_to_accuracy(recipe, dataset, budgets, seeds):
    runs = []
    for seed in range(seeds):
        for epochs in budgets:
            # Keras's moving batch-norm averages, as when results/speed-*.json were measured
            settings = training_for(recipe).replace(epochs=epochs, **MOVING_BATCH_NORM)
            start = time.perf_counter()
            _, result = train_and_evaluate(recipe, dataset, settings, seed, verbose=0)
            seconds = time.perf_counter() - start
            runs.append({"seed": seed, "epochs": epochs, "seconds": round(seconds, 1),
                         "test_accuracy": 100 * result["test_accuracy"], "val_accuracy": 100 * result["val_accuracy"]})
            print(f"{recipe}, seed {seed}, {epochs} epochs: {runs[-1]['test_accuracy']:.2f}% test "
                  f"in {seconds:.0f} s", flush=True)
    return runs


def summarise(runs):
    """Per target: each seed's seconds of its cheapest budget that reached it (None: none did)."""
    seeds = sorted({run["seed"] for run in runs})
    rows = []
    for target in TARGETS:
        per_seed = []
        for seed in seeds:
            reached = [run["seconds"] for run in runs if run["seed"] == seed and run["test_accuracy"] >= target]
            per_seed.append(min(reached) if reached else None)
        # A seed that never got there counts as slower than every one that did.
        ordered = sorted(per_seed, key=lambda s: float("inf") if s is None else s)
        rows.append({"target": target, "seconds_per_seed": per_seed, "median_seconds": ordered[len(ordered) // 2],
                     "reached": sum(s is not None for s in per_seed)})
    return rows


def peak_memory():
    """MiB: the host's peak resident set, and the device's peak where the backend reports one."""
    memory = {"host": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # Linux: in KiB
    if keras.backend.backend() == "jax":
        import jax
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            memory["device"] = stats["peak_bytes_in_use"] / 2**20
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        if tf.config.list_physical_devices("GPU"):
            memory["device"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return {key: round(value) for key, value in memory.items()}


def render(report):
    """The report as Markdown: a section for each measurement it holds."""
    lines = [f"# Speed on {report['device']}", "",
             f"Command: `{report['command']}`  ",
             f"Backend: {report['backend']} (Keras {report['keras']}), date: {report['date']}, "
             f"batch size {report['batch_size']}, {report['steps_timed']} steps per timed epoch; "
             f"loading MNIST took {report['data_load_seconds']} s."]
    images = f"{report['train_images']:,} images"
    if "throughput" in report:
        lines += section("Throughput", f"Per row the fastest of {REPEATS} timed epochs.",
                         ["model", "ms per step", "steps per second", f"seconds per epoch ({images})",
                          "plain model.fit, no augmentation (ms per step)", "ratio"],
                         [[row["model"], f"{row['ms_per_step']:.1f}", f"{row['steps_per_second']:.1f}",
                           f"{row['seconds_per_epoch']:.1f}", f"{row['reference_ms_per_step']:.1f}",
                           f"{row['ratio_to_reference']:.2f}"] for row in report["throughput"]])
    if "augmentation_cost" in report:
        lines += section("What augmentation costs",
                         "Extra time per training step, as a share of the step of the network it feeds: the network "
                         "with and without the augmentation trained one epoch each in turn, "
                         f"{report['augmentation_cost'][0]['pairs']} times; the median pair's ratio, and the range.",
                         ["augmentation", "network", "ms per step with it", "without it", "share of a step (median)",
                          "range"],
                         [[row["augmentation"], row["network"], f"{row['ms_per_step_with']:.1f}",
                           f"{row['ms_per_step_without']:.1f}", f"{row['share']:+.0%}",
                           f"{row['share_range'][0]:+.0%} to {row['share_range'][1]:+.0%}"]
                          for row in report["augmentation_cost"]])
    if "warps" in report:
        lines += section("The warps: keras.ops.image.affine_transform against hand-written code",
                         "The same random draws and the same images, moved by keras.ops.image.affine_transform "
                         "(model.py) or by the hand-written code it replaced (ShiftByMatrices, AffineByGathers), in "
                         "front of the same network; trained one epoch each in turn, "
                         f"{report['warps'][0]['pairs']} times; the median pair's ratio, and the range.",
                         ["warp", "network", "ms per step, affine_transform", "by hand",
                          "affine_transform / by hand (median)", "range"],
                         [[row["warp"], row["network"], f"{row['ms_per_step_affine_transform']:.1f}",
                           f"{row['ms_per_step_by_hand']:.1f}", f"{row['ratio']:.2f}x",
                           f"{row['ratio_range'][0]:.2f}x to {row['ratio_range'][1]:.2f}x"] for row in report["warps"]])
    if "speed_options" in report:
        lines += section(f"Speed options: {report['options_model']}",
                         "model.fit on the same images with each option, one epoch each in turn, "
                         f"{report['speed_options'][0]['rounds']} times; the median round, and the range of the "
                         "speed-ups. Mixed precision and the batch size change the arithmetic: what they do to "
                         "accuracy is in results/fast-speed-options.md.",
                         ["settings", "microseconds per image", f"seconds per epoch ({images})", "speed-up (median)",
                          "range"],
                         [[row["option"], f"{row['us_per_image']:.0f}", f"{row['seconds_per_epoch']:.1f}",
                           f"{row['speed_up']:.2f}x", f"{row['speed_up_range'][0]:.2f}x to {row['speed_up_range'][1]:.2f}x"]
                          for row in report["speed_options"]])
    if "time_to_accuracy" in report:
        lines += section(f"Time to accuracy: {report['recipe']}, {report['recipe_settings']}", None,
                         ["target (test)", "median seconds", "seconds per seed", "seeds that reached it"],
                         [[f"{row['target']:.1f}%",
                           "not reached" if row["median_seconds"] is None else f"{row['median_seconds']:.0f}",
                           ", ".join("-" if s is None else f"{s:.0f}" for s in row["seconds_per_seed"]),
                           f"{row['reached']} of {len(row['seconds_per_seed'])}"] for row in report["time_to_accuracy"]])
        lines += section_table(["seed", "epochs", "seconds", "val", "test"],
                               [[str(run["seed"]), str(run["epochs"]), f"{run['seconds']:.0f}",
                                 f"{run['val_accuracy']:.2f}%", f"{run['test_accuracy']:.2f}%"] for run in report["runs"]])
    memory = ", ".join(f"{when.replace('_', ' ')}: " + ", ".join(f"{where} {value:,}" for where, value in peak.items())
                       for when, peak in report["peak_memory_mib"].items())
    lines += ["", f"Peak memory (MiB), {memory}.", ""]
    return "\n".join(lines)


def section(title, text, header, rows):
    """A report section's lines: its heading, a paragraph (if any), and a table."""
    return ["", f"## {title}", *(["", text] if text else []), *section_table(header, rows)]


def section_table(header, rows):
    """A Markdown table's lines, after a blank one."""
    return ["", f"| {' | '.join(header)} |", f"|{' --- |' * len(header)}",
            *(f"| {' | '.join(row)} |" for row in rows)]
