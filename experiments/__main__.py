"""Rerun a tutorial step by step and compare its published accuracies with ours.

    python -m experiments spark                 # every step, 3 seeds, results/spark.md
    python -m experiments spark --seeds 1 --steps "baseline CNN" "+ L2"
    python -m experiments spark --quick         # 200 images, one epoch: a smoke test
    python -m experiments spark                 # again after a stop, or once steps are added: runs the rest
    python -m experiments speed --help          # the speed benchmark (experiments/speed.py)
    python -m experiments tune --help           # hyperparameter search with KerasTuner (experiments/tune.py)
"""
import argparse
import importlib
import pkgutil
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # data.py, model.py, train.py
import quiet  # noqa: E402

quiet.import_keras()  # before any other module imports it: TensorFlow's start-up notes stay off the terminal

from data import DataError  # noqa: E402
from experiments.runner import RESULTS, finished_rows, run_experiment, settings_for, table, write_report  # noqa: E402
from main import positive_int, unwritable  # noqa: E402
from train import SettingError, TrainingError, describe_device, tensorboard_missing  # noqa: E402

# Every module here but these is an experiment (a list of steps).
NOT_EXPERIMENTS = ("runner", "speed", "tune", "__main__")
EXPERIMENTS = sorted(module.name for module in pkgutil.iter_modules([str(Path(__file__).parent)])
                     if module.name not in NOT_EXPERIMENTS)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["speed"]:
        from experiments import speed
        return speed.main(argv[1:])
    if argv[:1] == ["tune"]:
        from experiments import tune
        return tune.main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=EXPERIMENTS, help="an experiment, or `speed` for the speed benchmark")
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeds per step (default: 3)")
    parser.add_argument("--quick", action="store_true", help="200 images of each split and one epoch per step")
    parser.add_argument("--steps", nargs="+", metavar="STEP", help="run only these steps (by name)")
    parser.add_argument("--data-dir", help="folder with the dataset files (default: $DATA_DIR, ...)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for NAME.json and NAME.md "
                        "(default: results/; --quick runs write NAME-quick.*)")
    parser.add_argument("--plots", metavar="DIR", help="pictures of each step's first model (see plots.py), "
                        "one folder per step")
    parser.add_argument("--tensorboard", metavar="DIR", help="log each epoch for TensorBoard in DIR/STEP/seedN "
                        "(view with: tensorboard --logdir DIR)")
    parser.add_argument("--verbose", action="store_true", help="model summaries and progress bars")
    parser.add_argument("--fresh", action="store_true", help="run every step, even where an earlier run of "
                        "the same command that was stopped has finished some")
    args = parser.parse_args(argv)
    if not args.out.is_dir():
        parser.error(f"argument --out: {args.out} is not a folder")
    problem = args.tensorboard and (unwritable(args.tensorboard, folder=True) or tensorboard_missing())
    if problem:
        parser.error(f"argument --tensorboard: {problem}")
    experiment = importlib.import_module(f"experiments.{args.name}")
    unknown = set(args.steps or []) - {step.name for step in experiment.STEPS}
    if unknown:
        parser.error(f"argument --steps: {args.name} has no step {', '.join(sorted(unknown))}")
    for step in experiment.STEPS:  # every step's settings first: a mistyped one stops the run before it starts
        try:
            settings_for(step)
        except SettingError as error:
            sys.exit(f"error: {args.name}, step {step.name!r}: {error}")

    device = describe_device()
    print(f"{args.name}: {experiment.__doc__.strip().splitlines()[0]} (on {device})")
    name = f"{args.name}-quick" if args.quick else args.name
    command = "python -m experiments " + shlex.join(arg for arg in argv if arg != "--fresh")
    wanted = [step.name for step in experiment.STEPS if not args.steps or step.name in args.steps]
    # The same command, stopped part-way on this machine: keep the steps it finished.
    rows = [] if args.fresh else finished_rows(args.out / f"{name}.json", command, device, wanted)
    if rows:
        print(f"Carrying on: {len(rows)} of {len(wanted)} steps are done in {args.out / name}.json "
              f"(--fresh runs them again)")
    remaining = [step for step in wanted if step not in {row["step"] for row in rows}]
    try:
        for row in run_experiment(experiment, args.seeds, args.quick, args.data_dir, remaining,
                                  verbose=2 if args.verbose else 0, plots=args.plots, done=rows,
                                  tensorboard=args.tensorboard):
            rows.append(row)  # saved after every step: a stopped run keeps what it finished
            write_report(args.out, name, experiment, rows, command, device, len(wanted))
    except (DataError, TrainingError) as error:  # the steps finished before it stay in the report
        sys.exit(f"error: {error}")
    write_report(args.out, name, experiment, rows, command, device, len(wanted))  # also when none was left
    print("\n" + table(rows))
    print(f"\nWrote {args.out / name}.json and .md")


if __name__ == "__main__":
    main()
