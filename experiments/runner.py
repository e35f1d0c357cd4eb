"""Run an experiment (a list of Steps) over several seeds and report published against measured.

An experiment module (spark.py, l42.py, ...) holds a docstring, DATASET and STEPS; this
file does the rest: load the data, train every step with every seed through
train.train_and_evaluate (or the step's own `run`), print the table, write it as JSON and Markdown.
"""
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from data import Dataset, load_dataset
from model import averaged
from train import (Training, TrainingError, compile_model, evaluate, model_name, train, train_and_evaluate,
                   training_for, write_json, write_text)

RESULTS = Path(__file__).resolve().parent.parent / "results"  # where reports go by default
QUICK_LIMIT = 200  # --quick: images of each split kept, for the tests
QUICK_EPOCHS = 1
# Keras's moving batch-norm averages, where this project recomputes the statistics once training
# ends (train.recompute_batch_norm): for the steps that reproduce a tutorial, as the tutorials had
# them, and for the reports measured before the statistics were recomputed (fast, speed).
MOVING_BATCH_NORM = dict(batch_norm_statistics="moving")


@dataclass
class Step:
    """One rung of a tutorial: a model, how it trains, and what the tutorial published.

    model: a name in model.MODELS or a builder function (input_shape, num_classes, **options).
    published: the tutorial's accuracy in percent (None where it printed none).
    published_on: what that number measured, e.g. "test", "validation", "test (leaky)".
    training: the train.Training settings that differ from the model's own (training_for).
    data: load_dataset options, e.g. standardize=True or one_hot=True.
    dataset: the dataset it trains on, if not the experiment's DATASET.
    test: False for a run that helps make a choice: it is scored on the validation split only,
        and the test split is not read (the report shows the validation accuracy).
    seeds: how many seeds the step runs, if fewer than the experiment's (a step whose run uses
        the networks of all the seeds of an earlier one, say).
    run: for a step that is more than one fit (transfer learning, pseudo-labels, ...), a
        function (Trial) -> results dict like train_and_evaluate's; by default train_step.
        A "note" in that dict (what the run chose, say) joins the step's note in the report.
    note: anything a reader comparing the numbers should know.
    """
    name: str
    model: object
    published: float = None
    published_on: str = "test"
    hyperparameters: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    dataset: str = None
    test: bool = True
    seeds: int = None
    run: object = None
    note: str = ""


@dataclass
class Trial:
    """One step trained with one seed: what a step's `run` function is given."""
    step: Step
    dataset: Dataset
    settings: Training  # the step's, shortened to QUICK_EPOCHS with --quick
    seed: int
    quick: bool = False  # --quick: shorten every fit of the step (see settings_for)
    verbose: int = 0
    earlier: dict = field(default_factory=dict)  # step name -> its results with this seed, for the steps done
    log_dir: Path = None  # TensorBoard's folder for this step and seed (--tensorboard), or None

    def logs(self, part):
        """A sub-folder of log_dir for one of several fits of the trial (None without log_dir)."""
        return self.log_dir and self.log_dir / part


def settings_for(step, quick=False):
    """The step's training settings, for a --quick run or not."""
    settings = training_for(step.model).replace(**step.training)
    return settings.replace(epochs=epochs_for(settings.epochs, quick))


def epochs_for(epochs, quick):
    """How long a fit trains: `epochs`, or QUICK_EPOCHS in a --quick run."""
    return QUICK_EPOCHS if quick else epochs


def train_step(trial, dataset=None, part=None):
    """Train and test the step's model as the trial says, on `dataset` (default: the trial's);
    return the trained model and its results. part: for a step that trains several models, this
    one's name, its TensorBoard sub-folder."""
    dataset = trial.dataset if dataset is None else dataset
    network, training = train(trial.step.model, dataset, trial.settings, trial.seed, trial.step.hyperparameters,
                              verbose=trial.verbose, log_dir=trial.logs(part) if part else trial.log_dir)
    return network, evaluate(network, dataset, training, name=model_name(trial.step.model), test=trial.step.test)


def train_averaged(trial, size):
    """`size` networks of the step's model, trained with seeds size*seed ... size*seed + size-1, and
    the mean of their predictions (model.averaged): return it and its results, each network's own
    test accuracy among them (member_test_accuracies)."""
    members = [train_and_evaluate(trial.step.model, trial.dataset, trial.settings, seed,
                                  trial.step.hyperparameters, verbose=trial.verbose, log_dir=trial.logs(f"network{seed}"))
               for seed in range(size * trial.seed, size * (trial.seed + 1))]
    ensemble = averaged([network for network, _ in members])
    compile_model(ensemble, trial.settings, len(trial.dataset.x_train))  # the members' loss, for evaluate
    training = {"epochs_run": members[0][1]["epochs_run"],  # each network's
                "train_accuracy": float(np.mean([result["train_accuracy"] for _, result in members]))}
    return ensemble, {**evaluate(ensemble, trial.dataset, training),
                      "member_test_accuracies": [result["test_accuracy"] for _, result in members]}


def run_step(trial):
    """(the trained model, its results); a step with its own `run` gives no model back."""
    if trial.step.run:
        return None, trial.step.run(trial)
    return train_step(trial)


def folder_name(step):
    """A step's name as a folder name: letters, digits and underscores."""
    return re.sub(r"[^A-Za-z0-9]+", "_", step.name).strip("_")


def run_experiment(experiment, seeds=3, quick=False, data_dir=None, only=None, verbose=0, plots=None, done=(),
                   tensorboard=None):
    """Train every step (or only those named in `only`) with seeds 0..seeds-1, yielding each row.

    A generator, so that a caller can save each step's row as soon as it is done: a long
    run that is stopped keeps the steps it finished.

    done: the rows of steps already finished (by a run of the same command that was stopped);
    a step's `run` finds their results, and those of the steps run here, in Trial.earlier.
    plots: a folder for the pictures of each step's seed-0 model (plots.py), one
    subfolder per step; steps with their own `run` function have none.
    tensorboard: a folder for TensorBoard's event files, in STEP/seedN below it.
    """
    rows = list(done)
    datasets = {}
    for step in experiment.STEPS:
        if only is not None and step.name not in only:
            continue
        runs = []
        for seed in range(min(seeds, step.seeds or seeds)):
            name = step.dataset or experiment.DATASET
            key = (name, json.dumps(step.data, sort_keys=True), seed)
            if key not in datasets:  # the validation split depends on the seed
                datasets[key] = load_dataset(name, data_dir, seed=seed,
                                             limit=QUICK_LIMIT if quick else None, **step.data)
            earlier = {row["step"]: row["runs"][seed] for row in rows if seed < len(row["runs"])}
            log_dir = tensorboard and Path(tensorboard) / folder_name(step) / f"seed{seed}"
            trial = Trial(step, datasets[key], settings_for(step, quick), seed, quick, verbose, earlier, log_dir)
            start = time.perf_counter()
            try:
                model, result = run_step(trial)
            except TrainingError as error:  # say which step and seed
                raise TrainingError(f"{step.name} (seed {seed}): {error}") from None
            result["seconds"] = round(time.perf_counter() - start, 1)
            if plots and seed == 0 and model is not None:
                import plots as pictures  # matplotlib is only loaded when pictures are wanted
                folder = Path(plots) / folder_name(step)
                pictures.plot_all(folder, datasets[key], [result], [model])
            result.pop("history", None)
            runs.append(result)
            split = "test" if "test_accuracy" in result else "val"
            print(f"{step.name} (seed {seed}): {split} accuracy {result[f'{split}_accuracy']:.2%}, "
                  f"{result['seconds']:.0f} s", flush=True)
        rows.append(summarise(step, runs))
        yield rows[-1]


def accuracy(probabilities, labels):
    """The share of images whose most probable class is their label: for steps whose own
    `run` scores predictions that model.evaluate cannot make (averaged, test-time augmented)."""
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def summarise(step, runs):
    """A step's row of the report: the mean and spread of its runs, which the row keeps."""
    notes = [step.note] + [run.pop("note") for run in runs if "note" in run]
    # Like against like: where the tutorial published a validation accuracy, ours is measured
    # on our validation split too; the test accuracy is reported beside it.
    measured_on = "validation" if step.published_on == "validation" or not step.test else "test"
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
        "test": float(np.mean([100 * run["test_accuracy"] for run in runs])) if step.test else None,
        "difference": None if step.published is None else measured - step.published,
        "epochs_run": float(np.mean([run["epochs_run"] for run in runs])),
        "seconds": float(np.mean([run["seconds"] for run in runs])),
        "seeds": len(runs),
        "note": "; ".join(filter(None, notes)),
        "runs": runs,
    }


def table(rows):
    """The results as a Markdown table (which also reads well in a terminal)."""
    lines = ["| step | published | measured (mean ± std) | difference | epochs run | seconds | note |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        published = "-" if row["published"] is None else f"{row['published']:.2f}% ({row['published_on']})"
        difference = "-" if row["difference"] is None else f"{row['difference']:+.2f}"
        on = "test" if row["measured_on"] == "test" else \
            "validation" if row["test"] is None else f"validation; test {row['test']:.2f}%"
        lines.append(f"| {row['step']} | {published} | {row['measured']:.2f}% ± {row['std']:.2f} "
                     f"({on}; {row['seeds']} seed{'s' * (row['seeds'] > 1)}) | {difference} | "
                     f"{row['epochs_run']:.1f} | {row['seconds']:.0f} | {row['note']} |")
    return "\n".join(lines)


def finished_rows(path, command, device, wanted):
    """The rows of the report at `path` that need not run again: where it was written by the same
    command with the same backend and device, and is unfinished (a run that was stopped, or an
    experiment that has gained steps since), its rows for the `wanted` steps. Else none."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    same_run = (report.get("command"), report.get("backend"), report.get("device")) == \
        (command, keras.backend.backend(), device)
    rows = [row for row in report.get("steps", []) if row["step"] in wanted]
    unfinished = report.get("partial") or len(rows) < len(wanted)
    return rows if same_run and unfinished else []


def write_report(folder, name, experiment, rows, command, device, planned=None):
    """results/NAME.json and results/NAME.md, both written atomically.

    planned: how many steps the run will have; a report with fewer rows says it is partial.
    What NAME.md holds from its first `## ` heading on was written by hand (this function writes
    none): it is kept, so that a rerun updates the table without losing the notes about it.
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
    write_text(folder / f"{name}.md", markdown + hand_written(folder / f"{name}.md"))


def hand_written(report):
    """The part of the Markdown file `report` from its first `## ` heading on ("" if none or no file)."""
    text = report.read_text() if report.exists() else ""
    heading = re.search(r"^## ", text, flags=re.MULTILINE)
    return "\n" + text[heading.start():] if heading else ""
