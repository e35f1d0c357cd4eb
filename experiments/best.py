"""How far can it go: the best recipe for each dataset, 3 seeds, and the 3 networks averaged.

Protocol. Every choice behind these recipes (architecture, augmentation, schedule, epochs) was
made before any of their test scores existed: on the validation split where candidates were
compared (experiments/bestchoices.py, results/bestchoices.md, which never reads the test split),
or fixed in advance where the CPU time for a comparison was lacking (each step's note says
which). Each recipe was then frozen, and this experiment scores its 3 seeds on the test split
once each, reported as they came. The ensemble row averages the predictions of those same
3 networks (saved by the step before it, in NETWORKS): the ensemble's size, 3, was fixed in
advance, as "the networks of the seeds".

Test-time augmentation (TTA) came later, after the rows above had been scored on the test split:
its candidates score the same saved networks on the validation split alone (steps marked "a
choice"), the one with the highest mean there is kept if it beats no TTA (the recipe's own
validation accuracy), and only then are the networks and their ensemble scored with it on the
test split, once.

The tutorials' anchors and the published references are in results/best.md. Each recipe is a
model name, so `python main.py --dataset D --model D_best` trains seed 0 of its row.
"""
from pathlib import Path

import keras
import numpy as np

from experiments.fast import predict_with_tta
from experiments.runner import Step, accuracy, folder_name, train_step
from train import TrainingError, save_model

DATASET = "mnist"
ENSEMBLE_SIZE = 3  # networks averaged: those of seeds 0, 1 and 2
NETWORKS = Path(__file__).resolve().parent.parent / "networks"  # the trained networks, for the ensembles


def network_path(step, seed, quick):
    return NETWORKS / f"{folder_name(step)}-seed{seed}{'-quick' * quick}.keras"


def kept(trial):
    """Train and test the step's model, as usual, and save the network for the ensemble step."""
    network, result = train_step(trial)
    save_model(network, network_path(trial.step, trial.seed, trial.quick), trial.dataset.name)
    return result


# Test-time augmentation (TTA): a network's predictions averaged over views of each image, as
# fast.predict_with_tta's options. Letters and digits are not mirrored; clothes may be.
TTA = {"none": dict(shifts=[(0, 0)]),
       "shifts": dict(),  # the image and its 4 neighbours one pixel away
       "mirror": dict(shifts=[(0, 0)], mirror=True),  # the image and its mirror image
       "shifts and mirror": dict(mirror=True)}  # the 5 shifted images and their 5 mirror images


def saved_networks(step, trial, seeds):
    """The networks that `step` (run by kept) trained with `seeds`, loaded. A TrainingError if one
    is missing, or if the one of the trial's seed does not score the validation accuracy that step
    measured in this run (it is then another run's)."""
    paths = [network_path(step, seed, trial.quick) for seed in seeds]
    missing = [path.name for path in paths if not path.exists()]
    if missing:
        raise TrainingError(f"no saved network {', '.join(missing)}: run step {step.name!r} "
                            f"with {max(seeds) + 1} seeds first")
    networks = [keras.models.load_model(path, compile=False) for path in paths]
    measured = trial.earlier.get(step.name)
    if measured:
        mine, path = networks[seeds.index(trial.seed)], paths[seeds.index(trial.seed)]
        validation = accuracy(mine.predict(trial.dataset.x_val, verbose=0), trial.dataset.y_val)
        if not np.isclose(validation, measured["val_accuracy"]):
            raise TrainingError(f"the saved {path.name} scores {validation:.2%} on validation, not the "
                                f"{measured['val_accuracy']:.2%} of step {step.name!r}: it is from another run; "
                                "run that step again")
    return networks


def with_tta(step, tta):
    """A step's run: the network that `step` (run by kept) trained with this seed, its predictions
    averaged over the views TTA[tta]. The test split is read only by a step with test=True."""
    def run(trial):
        network, = saved_networks(step, trial, [trial.seed])
        data, views = trial.dataset, TTA[tta]
        result = {"name": network.name, "params": network.count_params(),
                  "epochs_run": trial.earlier.get(step.name, {}).get("epochs_run"),
                  "val_accuracy": accuracy(predict_with_tta(network, data.x_val, **views), data.y_val)}
        if trial.step.test:
            result["test_accuracy"] = accuracy(predict_with_tta(network, data.x_test, **views), data.y_test)
        return result
    return run


def seeds_averaged(step, tta="none"):
    """A step's run: the networks that `step` (run by kept) trained with seeds 0 ... ENSEMBLE_SIZE-1,
    their predictions (over the views TTA[tta]) averaged, scored on the test split. Its validation
    accuracy means little: each network held out a different validation split, so it saw most of
    the others' images."""
    def run(trial):
        members = saved_networks(step, trial, list(range(ENSEMBLE_SIZE)))
        data, views = trial.dataset, TTA[tta]
        val = [predict_with_tta(member, data.x_val, **views) for member in members]
        test = [predict_with_tta(member, data.x_test, **views) for member in members]
        return {"name": "averaged", "params": sum(member.count_params() for member in members),
                "epochs_run": trial.earlier.get(step.name, {}).get("epochs_run"),
                "val_accuracy": accuracy(np.mean(val, axis=0), data.y_val),
                "test_accuracy": accuracy(np.mean(test, axis=0), data.y_test),
                "member_test_accuracies": [accuracy(predictions, data.y_test) for predictions in test]}
    return run


def recipe(name, model, note, dataset, tta_choices=(), tta=None):
    """A final recipe's step (3 seeds, networks kept) and its ensemble's step; then, for each of
    `tta_choices`, a step that scores those networks with that test-time augmentation on the
    validation split alone; then, with the `tta` chosen there, the networks and their ensemble
    scored with it on the test split."""
    final = Step(name, model, dataset=dataset, run=kept, note=note)
    averaged_note = (f"the {ENSEMBLE_SIZE} networks above; each one's test accuracy is member_test_accuracies "
                     "in the JSON")
    steps = [final, Step(f"{name}: {ENSEMBLE_SIZE} networks averaged", model, dataset=dataset, seeds=1,
                         run=seeds_averaged(final), note=averaged_note)]
    steps += [Step(f"{name}, test-time {choice} (a choice)", model, dataset=dataset, test=False,
                   run=with_tta(final, choice), note="validation only; the networks above")
              for choice in tta_choices]
    if tta:
        steps += [Step(f"{name} + test-time {tta}", model, dataset=dataset, run=with_tta(final, tta),
                       note="the networks above"),
                  Step(f"{name} + test-time {tta}: {ENSEMBLE_SIZE} networks averaged", model, dataset=dataset,
                       seeds=1, run=seeds_averaged(final, tta), note=averaged_note)]
    return steps


STEPS = [
    *recipe("MNIST: mnist_best", "mnist_best", "settings fixed in advance (no comparison on validation)", "mnist",
            tta_choices=["shifts"]),
    *recipe("notMNIST: notmnist_best", "notmnist_best", "chosen on validation: results/bestchoices.md", "notmnist",
            tta_choices=["shifts"], tta="shifts"),
    *recipe("Fashion-MNIST: fashion_best", "fashion_best", "settings fixed in advance (no comparison on validation)",
            "fashion", tta_choices=["mirror", "shifts and mirror"], tta="shifts and mirror"),
]
