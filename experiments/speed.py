"""Speed: how fast each model trains, what its augmentation costs, and how soon the fast recipe reaches 99.5%.

    python -m experiments speed                 # everything: results/speed-cpu.md / speed-gpu.md
    python -m experiments speed --seeds 1 --budgets 4 8
    python -m experiments speed --tiny          # a few hundred images: a smoke test

Five measurements on MNIST, in one process, for the backend and device it runs on:

1. Throughput. For every model in model.MODELS: seconds per training step through this
   project's training loop (train.train_and_evaluate: its shuffled batches and callbacks),
   with and without augmentation, as a ratio to a plain reference: model.fit on in-memory
   arrays, the same model without augmentation. Each timing is the fastest of REPEATS
   epochs of STEPS steps, after one more epoch that compiles: on a shared machine, the
   fastest is the one least disturbed. Only training steps are timed: our loop validates
   after each epoch, the reference does not.
2. What each augmentation costs, as a share of a training step of the network it feeds:
   this project's RandomShift (Spark's shifts) and RandomAffine ("Beating MNIST"), and
   Keras's stock RandomTranslation for comparison. The network with and without it train
   one epoch each in turn, PAIRS times; each pair's ratio compares epochs a few seconds
   apart, so a machine whose speed drifts slows both alike. They are fed as our training
   loop feeds a model (train.ShuffledBatches.for_fit: on TensorFlow, without the tf.data
   autotuning that runs some epochs on one core on this project's 2-core CPU). The median
   pair counts.
3. Time to accuracy of a recipe (default: fast_cnn with its TRAINING settings): one full
   training run per epoch budget (the one-cycle schedule fits the budget), each scored on
   the test set once it is over. The time is the whole call: model building, compilation,
   training and scoring; loading the data is timed apart. The test set only reports: it
   stops nothing and chooses nothing. Median and range over the seeds.
4. Speed options, on the Spark tutorial's 3-model ensemble with its shifts: more training
   steps per call into the compiled step, mixed precision, a 4x larger batch, and all
   three, against the tutorial's settings. One model.fit per option on the same images,
   trained one epoch each in turn, PAIRS times (as in 2.); each round's speed-ups compare
   epochs seconds apart, and the median round counts. What mixed precision and the larger
   batch do to accuracy: results/fast-speed-options.md.
5. Peak memory: the process's resident set on the host; the device's, where the backend says.
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

from data import DataError, load_dataset
from experiments.ladder import ladder_augmentation, ladder_dropout
from main import positive_int
from experiments.runner import RESULTS
from model import MODELS, get_model, options, training_for
from train import (ShuffledBatches, build_model, compute_device, describe_device, train_and_evaluate, write_json,
                   write_text)

STEPS = 30  # training steps per timed epoch
REPEATS = 3  # timed epochs per measurement, after one that compiles: the fastest one counts
PAIRS = 7  # alternating epochs (with, without) per augmentation: the median ratio counts
BATCH_SIZE = 128  # for every throughput measurement, as the tutorials train
RECIPE = "fast_cnn"
BUDGETS = [2, 4, 6]  # epochs: one training run each
TARGETS = [99.0, 99.4, 99.5, 99.6, 99.7]  # test accuracy, percent
OPTIONS_MODEL = "spark_finetuned"
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

    throughput = [measure(name, builder, options, dataset, args.steps) for name, builder, options in contenders()]
    costs = [augmentation_cost(*augmentation, dataset, args.steps, 2 if args.tiny else PAIRS)
             for augmentation in augmentations()]
    options = speed_options(dataset, args.steps, 2 if args.tiny else PAIRS)
    memory_after_throughput = peak_memory()
    runs = time_to_accuracy(args.recipe, dataset, args.budgets, args.seeds)
    report = {"device": device, "backend": keras.backend.backend(), "keras": keras.__version__,
              "date": time.strftime("%Y-%m-%d"), "command": shlex.join(["python", "-m", "experiments", "speed", *argv]),
              "data_load_seconds": round(load_seconds, 1), "train_images": len(dataset.x_train),
              "steps_timed": args.steps, "batch_size": BATCH_SIZE, "throughput": throughput,
              "augmentation_cost": costs, "options_model": OPTIONS_MODEL, "speed_options": options,
              "recipe": args.recipe, "recipe_settings": training_for(args.recipe),
              "runs": runs, "time_to_accuracy": summarise(runs),
              "peak_memory_mib": {"after_throughput": memory_after_throughput, "at_end": peak_memory()}}
    markdown = render(report)
    print("\n" + markdown)
    name = "speed-tiny" if args.tiny else f"speed-{compute_device()[0]}"
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
    return [("RandomShift (model.py): Spark's shifts", "spark_finetuned", ("spark_finetuned", {}), without_shifts),
            ("RandomShift (model.py)", "fast_cnn", ("fast_cnn", {}), ("fast_cnn", {"augment": False})),
            ("RandomAffine (model.py): rotation, shear, zoom", "ladder_dropout", (ladder_augmentation, {}),
             (ladder_dropout, {})),
            ("keras.layers.RandomTranslation: Spark's shifts, stock", "spark_finetuned",
             (spark_finetuned_stock_shifts, {}), without_shifts)]


def spark_finetuned_stock_shifts(input_shape, num_classes):
    """The Spark tutorial's final model with its shifts done by keras.layers.RandomTranslation."""
    network = get_model("spark_finetuned", input_shape, num_classes, augment=False)
    return keras.Sequential([keras.Input(shape=input_shape),
                             keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant"), network])


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
    settings = {**training_for(model), "batch_size": BATCH_SIZE, "epochs": 1 + REPEATS}
    settings.pop("patience", None)
    train_and_evaluate(model, small, {**settings, "callbacks": [lambda: timer]}, hyperparameters=hyperparameters,
                       verbose=0)
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
    images = steps * BATCH_SIZE
    x, y = dataset.x_train[:images], dataset.y_train[:images]
    models = []
    for model, hyperparameters in (with_it, without_it):
        models.append(get_model(model, dataset.input_shape, dataset.num_classes, **hyperparameters))
        models[-1].compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with_ms, without_ms = 1000 * alternating_epochs(models, [BATCH_SIZE] * 2, x, y, pairs).T / steps
    row = {"augmentation": augmentation, "network": network, "pairs": pairs,
           "ms_per_step_with": float(np.median(with_ms)), "ms_per_step_without": float(np.median(without_ms)),
           "share": float(np.median(with_ms / without_ms)) - 1,
           "share_range": [float(min(with_ms / without_ms)) - 1, float(max(with_ms / without_ms)) - 1]}
    print(f"{augmentation} on {network}: {row['share']:+.0%} of a step", flush=True)
    return row


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
            settings = {**training_for(recipe), "epochs": epochs}
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
    lines = [f"# Speed on {report['device']}", "",
             f"Command: `{report['command']}`  ",
             f"Backend: {report['backend']} (Keras {report['keras']}), date: {report['date']}, "
             f"batch size {report['batch_size']}, per row the fastest of {REPEATS} epochs of {report['steps_timed']} steps; "
             f"loading MNIST took {report['data_load_seconds']} s.", "",
             "## Throughput", "",
             f"| model | ms per step | steps per second | seconds per epoch ({report['train_images']:,} images) "
             "| plain model.fit, no augmentation (ms per step) | ratio |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in report["throughput"]:
        lines.append(f"| {row['model']} | {row['ms_per_step']:.1f} | {row['steps_per_second']:.1f} | "
                     f"{row['seconds_per_epoch']:.1f} | {row['reference_ms_per_step']:.1f} | "
                     f"{row['ratio_to_reference']:.2f} |")
    lines += ["", "## What augmentation costs", "",
              f"Extra time per training step, as a share of the step of the network it feeds: the network "
              f"with and without the augmentation trained one epoch each in turn, "
              f"{report['augmentation_cost'][0]['pairs']} times; the median pair's ratio, and the range.", "",
              "| augmentation | network | ms per step with it | without it | share of a step (median) | range |",
              "| --- | --- | --- | --- | --- | --- |"]
    for row in report["augmentation_cost"]:
        low, high = row["share_range"]
        lines.append(f"| {row['augmentation']} | {row['network']} | {row['ms_per_step_with']:.1f} | "
                     f"{row['ms_per_step_without']:.1f} | {row['share']:+.0%} | {low:+.0%} to {high:+.0%} |")
    lines += ["", f"## Speed options: {report['options_model']} (3 networks, shifts)", "",
              "model.fit on the same images with each option, one epoch each in turn, "
              f"{report['speed_options'][0]['rounds']} times; the median round, and the range of the speed-ups. "
              "Mixed precision and the batch size change the arithmetic: what they do to accuracy is in "
              "results/fast-speed-options.md.", "",
              f"| settings | microseconds per image | seconds per epoch ({report['train_images']:,} images) "
              "| speed-up (median) | range |", "| --- | --- | --- | --- | --- |"]
    for row in report["speed_options"]:
        low, high = row["speed_up_range"]
        lines.append(f"| {row['option']} | {row['us_per_image']:.0f} | {row['seconds_per_epoch']:.1f} | "
                     f"{row['speed_up']:.2f}x | {low:.2f}x to {high:.2f}x |")
    lines += ["", f"## Time to accuracy: {report['recipe']}, {report['recipe_settings']}", "",
              "| target (test) | median seconds | seconds per seed | seeds that reached it |",
              "| --- | --- | --- | --- |"]
    for row in report["time_to_accuracy"]:
        median = "not reached" if row["median_seconds"] is None else f"{row['median_seconds']:.0f}"
        per_seed = ", ".join("-" if s is None else f"{s:.0f}" for s in row["seconds_per_seed"])
        lines.append(f"| {row['target']:.1f}% | {median} | {per_seed} | "
                     f"{row['reached']} of {len(row['seconds_per_seed'])} |")
    lines += ["", "| seed | epochs | seconds | val | test |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {run['seed']} | {run['epochs']} | {run['seconds']:.0f} | {run['val_accuracy']:.2f}% | "
              f"{run['test_accuracy']:.2f}% |" for run in report["runs"]]
    def mib(memory):
        return ", ".join(f"{where} {value:,}" for where, value in memory.items())
    memory = report["peak_memory_mib"]
    lines += ["", f"Peak memory (MiB): {mib(memory['after_throughput'])} after the throughput runs, "
              f"{mib(memory['at_end'])} at the end.", ""]
    return "\n".join(lines)
