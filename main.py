"""Train one or more models on MNIST, Fashion-MNIST or notMNIST and compare their accuracies.

    python main.py                                      # the starter pack's MLP against Spark's CNN, MNIST
    python main.py --model spark_baseline --epochs 12
    python main.py --dataset notmnist --model l42_mlp --optimizer adam
    python main.py --model fast_cnn --distribute        # on all the GPUs, data parallel (JAX or TensorFlow)
    python main.py --help

Each model trains on the training split, watches the validation split (for early
stopping), and is scored once on the test set when its training is over.

Every output folder and file is checked before training starts. The --results file is
written again after each model, so a model that fails keeps the earlier ones' results.
Each model's checkpoint is kept until the run has written all its outputs: the same
command started again after an interruption or an error carries on from the last
completed epoch, and does not train a finished model again. Two runs of one command at
the same time would write the same checkpoint: the second stops with an error.
"""
import argparse
import contextlib
import os
import sys

import quiet

quiet.import_keras()  # before any other module imports it: TensorFlow's start-up notes stay off the terminal

import keras  # noqa: E402

from data import CLASS_NAMES, DataError, load_dataset  # noqa: E402
from model import MODELS, options  # noqa: E402
from train import (BATCH_NORM_STATISTICS, OPTIMIZERS, PRECISIONS, CheckpointError, SettingError, TrainingError,  # noqa: E402
                   checkpoint_folder, clear_checkpoint, data_parallel_devices, describe_device, distributed,
                   hold_checkpoint, save_model, scaled_learning_rate, tensorboard_missing, train_and_evaluate,
                   training_for, uneven_batches, write_json)

DEFAULT_DATASET = "mnist"
DEFAULT_MODELS = ["l42_mlp", "spark_baseline"]
DEFAULT_PATIENCE = 5
# data.load_dataset holds out at least one training image for validation: one more is left to train on.
MIN_LIMIT = 2
# Flags that set a model option, for the models that have it.
OPTION_FLAGS = {"--augment": "augment", "--l2-lambda": "l2_lambda"}


def print_table(dataset, results):
    print(f"\nTest accuracy on {dataset.name} ({len(dataset.x_test)} test images):")
    print(f"{'model':<18} {'params':>10} {'epochs':>7} {'seconds':>8} {'train':>7} {'val':>7} {'test':>7}")
    for r in results:
        print(f"{r['name']:<18} {r['params']:>10,} {r['epochs_run']:>7} {r['train_seconds']:>8.0f} "
              f"{r['train_accuracy']:>7.2%} {r['val_accuracy']:>7.2%} {r['test_accuracy']:>7.2%}")


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def image_count(text):
    value = int(text)
    if value < MIN_LIMIT:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_LIMIT} (one image to validate on, "
                                         f"one to train on), got {text}")
    return value


def non_negative_float(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(CLASS_NAMES), default=DEFAULT_DATASET)
    parser.add_argument("--model", nargs="+", action="extend", choices=sorted(MODELS), metavar="NAME",
                        help=f"one or more of: {', '.join(MODELS)}; a repeated --model adds to the list, "
                        f"each model once (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--epochs", type=positive_int, help="epochs (at most, with early stopping); "
                        "default: the tutorial's, see TRAINING in model.py")
    parser.add_argument("--batch-size", type=positive_int, help="default: the tutorial's")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="default: the tutorial's")
    parser.add_argument("--learning-rate", type=positive_float, help="default: the tutorial's")
    parser.add_argument("--scale-learning-rate", action="store_true",
                        help="with --batch-size: scale the learning rate to the new batch size, "
                        "linearly for SGD, by the square root for Adam and the other adaptive optimizers")
    parser.add_argument("--precision", choices=PRECISIONS, help="mixed_bfloat16 or mixed_float16: compute in "
                        "16 bits, keep the weights in 32 (default: float32)")
    parser.add_argument("--steps-per-execution", type=positive_int, metavar="N",
                        help="training steps per call into the compiled step; callbacks run once per call "
                        "(default: 1 on a CPU, 16 on a GPU; PyTorch: 1 only)")
    parser.add_argument("--distribute", action="store_true",
                        help="train each model on all the devices Keras sees (its GPUs, else its CPU): each "
                        "step's batch, --batch-size images in all, is split evenly over them (JAX: DataParallel; "
                        "TensorFlow: MirroredStrategy; not PyTorch)")
    parser.add_argument("--batch-norm-statistics", choices=BATCH_NORM_STATISTICS,
                        help="what batch norm normalises with once trained: its statistics recomputed on "
                        "training images, or Keras's moving averages, as the tutorials had them (default: recomputed)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction,
                        help="random shifts while training (models with an `augment` option only)")
    parser.add_argument("--l2-lambda", type=non_negative_float, metavar="LAMBDA",
                        help="L2 penalty on the weights, 0 for none (models with an `l2_lambda` option only)")
    parser.add_argument("--early-stopping", action=argparse.BooleanOptionalAction,
                        help="stop when the validation loss stops improving and keep the best weights "
                        "(default: on where the tutorial used it)")
    parser.add_argument("--patience", type=positive_int,
                        help=f"epochs without improvement before stopping (default {DEFAULT_PATIENCE})")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="fixes weights, shuffling, dropout, augmentation and the validation split")
    parser.add_argument("--data-dir", help="folder with the dataset files (default: $DATA_DIR, "
                        "then the Keras cache, then a download)")
    parser.add_argument("--limit", type=image_count,
                        help="use only the first N training and N test images (quick checks)")
    parser.add_argument("--results", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--save", metavar="DIR", help="save each trained model as DIR/NAME.keras")
    parser.add_argument("--checkpoints", metavar="DIR", default="checkpoints",
                        help="where each epoch's state is kept until the run's outputs are written: an "
                        "interrupted run started again with the same command resumes there (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true", help="ignore any checkpoint and start from scratch")
    parser.add_argument("--plots", metavar="DIR", help="draw learning curves, mistakes, confusion matrices "
                        "and rotation robustness as PNG files in DIR")
    parser.add_argument("--tensorboard", metavar="DIR", help="log each epoch for TensorBoard in "
                        "DIR/DATASET-MODEL/seedN (view with: tensorboard --logdir DIR)")
    args = parser.parse_args(argv)
    args.model = args.model or DEFAULT_MODELS  # not argparse's default: "extend" would add to it
    twice = sorted({name for name in args.model if args.model.count(name) > 1})
    if twice:  # the same seed would give the same result twice, and both would share one checkpoint folder
        parser.error(f"argument --model: {', '.join(twice)} named twice")
    if args.scale_learning_rate and args.batch_size is None:
        parser.error("argument --scale-learning-rate: needs --batch-size")
    if (args.steps_per_execution or 1) > 1 and keras.backend.backend() == "torch":
        parser.error("argument --steps-per-execution: Keras's PyTorch backend runs 1 step per call only")
    if args.distribute and keras.backend.backend() == "torch":
        parser.error("argument --distribute: Keras's PyTorch backend does not train on several devices here: "
                     "use JAX or TensorFlow (KERAS_BACKEND)")
    for flag, path, folder in [("--results", args.results, False), ("--save", args.save, True),
                               ("--plots", args.plots, True), ("--checkpoints", args.checkpoints, True),
                               ("--tensorboard", args.tensorboard, True)]:
        problem = path and unwritable(path, folder)
        if problem:
            parser.error(f"argument {flag}: {problem}")
    missing = args.tensorboard and tensorboard_missing()
    if missing:
        parser.error(f"argument --tensorboard: {missing}")
    for flag, option in OPTION_FLAGS.items():
        without = [name for name in args.model if option not in options(name)]
        if getattr(args, option) is not None and without:
            parser.error(f"argument {flag}: model {', '.join(without)} has no {option} option")
    return args


def unwritable(path, folder):
    """Why `path` cannot be written: as a folder of files (`folder`), else as one file; None if it can.
    Every output is checked before training, so that no run fails once its work is done."""
    if os.path.exists(path) and os.path.isdir(path) != folder:
        return f"{path} is {'a file, not a folder' if folder else 'a folder, not a file'}"
    place = os.path.abspath(path) if folder else os.path.dirname(os.path.abspath(path))
    nearest = place
    while not os.path.exists(nearest):  # a missing folder is made, with its missing parents
        nearest = os.path.dirname(nearest)
    if not os.path.isdir(nearest):
        return f"{nearest} is a file, not a folder"
    if nearest != place and not folder:  # a file is written into a folder that is there
        return f"the folder of {path} does not exist"
    if not os.access(nearest, os.W_OK | os.X_OK):
        return f"cannot write in {nearest}"
    return None


def settings_for(name, args):
    """The tutorial's training settings for `name` (a train.Training), with the command line's overrides."""
    tutorial = training_for(name)
    flags = ("optimizer", "learning_rate", "batch_size", "epochs", "patience", "precision", "steps_per_execution",
             "batch_norm_statistics")
    settings = tutorial.replace(**{flag: getattr(args, flag) for flag in flags if getattr(args, flag) is not None})
    if args.scale_learning_rate:
        settings = settings.replace(learning_rate=scaled_learning_rate(
            settings.learning_rate, settings.optimizer, settings.batch_size, tutorial.batch_size))
    if args.early_stopping and settings.patience is None:
        settings = settings.replace(patience=DEFAULT_PATIENCE)
    elif args.early_stopping is False:
        settings = settings.replace(patience=None)
    return settings


def main(argv=None):
    args = parse_args(argv)
    settings = {}  # every model's first: a mistyped entry in model.TRAINING stops the run before it starts
    for name in args.model:
        try:
            settings[name] = settings_for(name, args)
        except SettingError as error:
            sys.exit(f"error: {name}: {error}")
    devices = len(data_parallel_devices()) if args.distribute else 1
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}, on {describe_device()}"
          + (f", data parallel over {devices} device{'s' * (devices > 1)}" if args.distribute else ""))
    try:
        dataset = load_dataset(args.dataset, args.data_dir, seed=args.seed, limit=args.limit)
    except DataError as error:
        sys.exit(f"error: {error}")
    for name in args.model:  # every model's, before the first trains
        problem = uneven_batches(dataset, settings[name].batch_size, devices)
        if problem:
            sys.exit(f"error: {name}: --distribute: {problem}; choose another --batch-size or --limit")
    print(f"{args.dataset}: {len(dataset.x_train)} training, {len(dataset.x_val)} validation, "
          f"{len(dataset.x_test)} test images, from {dataset.source}")

    hyperparameters = {option: getattr(args, option) for option in OPTION_FLAGS.values()
                       if getattr(args, option) is not None}
    results, models, folders = [], [], []
    with contextlib.ExitStack() as held:  # each model's checkpoint folder stays this run's until the run ends
        for name in args.model:
            print(f"\n=== {name}: {settings[name]}")
            checkpoints = checkpoint_folder(args.checkpoints, name, dataset, settings[name], hyperparameters,
                                            args.seed, devices)
            try:
                held.enter_context(hold_checkpoint(checkpoints))  # before --fresh: another run's state is not ours
                folders.append(checkpoints)
                if args.fresh:
                    clear_checkpoint(checkpoints)
                log_dir = args.tensorboard and os.path.join(args.tensorboard, f"{args.dataset}-{name}",
                                                            f"seed{args.seed}")
                with distributed(args.distribute):
                    model, result = train_and_evaluate(name, dataset, settings[name], args.seed, hyperparameters,
                                                       checkpoints, verbose=1 if sys.stdout.isatty() else 2,
                                                       log_dir=log_dir)
            except KeyboardInterrupt:
                print(f"\nInterrupted. Every completed epoch of {name} is saved in {checkpoints}: "
                      f"run the same command again to carry on from there.", file=sys.stderr)
                sys.exit(130)  # the usual status for Ctrl-C
            except TrainingError as error:
                if results:  # the models before this one, whose results are written already
                    print_table(dataset, results)
                advice = "; run with --fresh to start over" if isinstance(error, CheckpointError) else ""
                sys.exit(f"error: {name}: {error}{advice}")
            results.append(result)
            models.append(model)
            if args.save:
                save_model(model, os.path.join(args.save, f"{name}.keras"), args.dataset)
            if args.results:  # after each model: a later one that fails does not take these results with it
                write_json(args.results, {"dataset": args.dataset, "backend": keras.backend.backend(),
                                          "device": describe_device(), "seed": args.seed, "models": results})
        print_table(dataset, results)
        if args.plots:
            import plots  # matplotlib is only loaded when pictures are wanted
            plots.plot_all(args.plots, dataset, results, models)
        for checkpoints in folders:  # everything is written: the same command now starts afresh
            clear_checkpoint(checkpoints)  # and hold_checkpoint removes the emptied folder on leaving


if __name__ == "__main__":
    main()
