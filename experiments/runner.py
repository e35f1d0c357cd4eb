"""Run an experiment (a list of Steps) over several seeds and report published against measured.

An experiment module (spark.py, l42.py, ...) holds a docstring, DATASET and STEPS; this
file does the rest: load the data, train every step with every seed through
train.train_and_evaluate, print the table, write it as JSON and Markdown.
"""
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from data import load_dataset
from model import training_for
from train import TrainingError, train_and_evaluate, write_json, write_text

RESULTS = Path(__file__).resolve().parent.parent / "results"  # where reports go by default
QUICK_LIMIT = 500  # --quick: images of each split kept, for the tests
QUICK_EPOCHS = 1


@dataclass
class Step:
    """One rung of a tutorial: a model, how it trains, and what the tutorial published.

    model: a name in model.MODELS or a builder function (input_shape, num_classes, **options).
    published: the tutorial's accuracy in percent (None where it printed none).
    published_on: what that number measured, e.g. "test", "validation", "test (leaky)".
    training: overrides of the model's TRAINING settings (see train.train_and_evaluate).
    data: load_dataset options, e.g. standardize=True or one_hot=True.
    run: for a step that is more than one fit (transfer learning, pseudo-labels, ...), a
        function (step, dataset, settings, seed, verbose) -> results dict like
        train_and_evaluate's second value; by default train_and_evaluate itself.
    note: anything a reader comparing the numbers should know.
    """
    name: str
    model: object
    published: float = None
    published_on: str = "test"
    hyperparameters: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    run: object = None
    note: str = ""


def settings_for(step, quick):
    settings = {**training_for(step.model), **step.training}
    if quick:
        settings["epochs"] = QUICK_EPOCHS
    return settings


def run_step(step, dataset, settings, seed, verbose):
    """(the trained model, its results); a step with its own `run` gives no model back."""
    if step.run:
        return None, step.run(step, dataset, settings, seed, verbose)
    return train_and_evaluate(step.model, dataset, settings, seed, step.hyperparameters, verbose=verbose)


def run_experiment(experiment, seeds=3, quick=False, data_dir=None, only=None, verbose=0, plots=None):
    """Train every step (or only those named in `only`) with seeds 0..seeds-1, yielding each row.

    A generator, so that a caller can save each step's row as soon as it is done: a long
    run that is stopped keeps the steps it finished.

    plots: a folder for the pictures of each step's seed-0 model (plots.py), one
    subfolder per step; steps with their own `run` function have none.
    """
    datasets = {}
    for step in experiment.STEPS:
        if only is not None and step.name not in only:
            continue
        settings = settings_for(step, quick)
        runs = []
        for seed in range(seeds):
            key = (json.dumps(step.data, sort_keys=True), seed)
            if key not in datasets:  # the validation split depends on the seed
                datasets[key] = load_dataset(experiment.DATASET, data_dir, seed=seed,
                                             limit=QUICK_LIMIT if quick else None, **step.data)
            start = time.perf_counter()
            try:
                model, result = run_step(step, datasets[key], settings, seed, verbose)
            except TrainingError as error:  # say which step and seed
                raise TrainingError(f"{step.name} (seed {seed}): {error}") from None
            result["seconds"] = round(time.perf_counter() - start, 1)
            if plots and seed == 0 and model is not None:
                import plots as pictures  # matplotlib is only loaded when pictures are wanted
                folder = Path(plots) / re.sub(r"[^A-Za-z0-9]+", "_", step.name).strip("_")
                pictures.plot_all(folder, datasets[key], [result], [model])
            result.pop("history", None)
            runs.append(result)
            print(f"{step.name} (seed {seed}): test accuracy {result['test_accuracy']:.2%}, "
                  f"{result['seconds']:.0f} s", flush=True)
        yield summarise(step, runs)


def accuracy(probabilities, labels):
    """The share of images whose most probable class is their label: for steps whose own
    `run` scores predictions that model.evaluate cannot make (averaged, test-time augmented)."""
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def summarise(step, runs):
    # Like against like: where the tutorial published a validation accuracy, ours is measured
    # on our validation split too; the test accuracy is reported beside it.
    measured_on = "validation" if step.published_on == "validation" else "test"
    key = "val_accuracy" if measured_on == "validation" else "test_accuracy"
    accuracies = 100 * np.array([run[key] for run in runs])
    measured = float(accuracies.mean())
    return {
        "step": step.name,
        "published": step.published,
        "published_on": step.published_on,
        "measured": measured,
        "measured_on": measured_on,
        "std": float(accuracies.std()),
        "test": float(np.mean([100 * run["test_accuracy"] for run in runs])),
        "difference": None if step.published is None else measured - step.published,
        "epochs_run": float(np.mean([run["epochs_run"] for run in runs])),
        "seconds": float(np.mean([run["seconds"] for run in runs])),
        "seeds": len(runs),
        "note": step.note,
        "runs": runs,
    }


def table(rows):
    """The results as a Markdown table (which also reads well in a terminal)."""
    lines = ["| step | published | measured (mean ± std) | difference | epochs run | seconds | note |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        published = "-" if row["published"] is None else f"{row['published']:.2f}% ({row['published_on']})"
        difference = "-" if row["difference"] is None else f"{row['difference']:+.2f}"
        on = f"validation; test {row['test']:.2f}%" if row["measured_on"] == "validation" else "test"
        lines.append(f"| {row['step']} | {published} | {row['measured']:.2f}% ± {row['std']:.2f} "
                     f"({on}; {row['seeds']} seed{'s' * (row['seeds'] > 1)}) | {difference} | "
                     f"{row['epochs_run']:.1f} | {row['seconds']:.0f} | {row['note']} |")
    return "\n".join(lines)


def finished_rows(path, command, device):
    """The rows in the report at `path` if it is a partial one, written by the same command
    with the same backend and device: the steps that need not run again. Else none."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    same_run = (report.get("command"), report.get("backend"), report.get("device")) == \
        (command, keras.backend.backend(), device)
    return report["steps"] if same_run and report.get("partial") else []


def write_report(folder, name, experiment, rows, command, device, planned=None):
    """results/NAME.json and results/NAME.md, both written atomically.

    planned: how many steps the run will have; a report with fewer rows says it is partial.
    """
    about = {"experiment": name, "command": command, "backend": keras.backend.backend(),
             "device": device, "date": time.strftime("%Y-%m-%d"), "keras": keras.__version__}
    partial = planned is not None and len(rows) < planned
    if partial:
        about["partial"] = f"{len(rows)} of {planned} steps done"
    write_json(folder / f"{name}.json", {**about, "steps": rows})
    markdown = (f"# {name}: {experiment.__doc__.strip().splitlines()[0]}\n\n"
                f"Command: `{command}`  \nBackend: {about['backend']} (Keras {about['keras']}), "
                f"device: {device}, date: {about['date']}\n\n"
                + (f"**Partial: {about['partial']}** (the run was stopped or is still going).\n\n" if partial else "")
                + f"{table(rows)}\n")
    write_text(folder / f"{name}.md", markdown)
