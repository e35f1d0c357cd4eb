"""How far can it go: the best recipe for each dataset, 3 seeds, and the 3 networks averaged.

Protocol. Every choice behind these recipes (architecture, augmentation, schedule, epochs) was
made before any of their test scores existed: on the validation split where candidates were
compared (experiments/bestchoices.py, results/bestchoices.md, which never reads the test split),
or fixed in advance where the CPU time for a comparison was lacking (each step's note says
which). Each recipe was then frozen, and this experiment scores its 3 seeds on the test split
once each, reported as they came. The ensemble row averages the predictions of those same
3 networks (saved by the step before it, in NETWORKS): the ensemble's size, 3, was fixed in
advance, as "the networks of the seeds".

The tutorials' anchors and the published references are in results/best.md. Each recipe is a
model name, so `python main.py --dataset D --model D_best` trains seed 0 of its row.
"""
from pathlib import Path

import keras
import numpy as np

from experiments.runner import Step, accuracy, folder_name, train_step
from model import averaged
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


def seeds_averaged(step):
    """A step's run: the networks that `step` (run by kept) trained with seeds 0 ... ENSEMBLE_SIZE-1,
    their predictions averaged, scored on the test split. Its validation accuracy means little:
    each network held out a different validation split, so it saw most of the others' images."""
    def run(trial):
        paths = [network_path(step, seed, trial.quick) for seed in range(ENSEMBLE_SIZE)]
        missing = [path.name for path in paths if not path.exists()]
        if missing:
            raise TrainingError(f"no saved network {', '.join(missing)}: run step {step.name!r} "
                                f"with {ENSEMBLE_SIZE} seeds first")
        members = [keras.models.load_model(path, compile=False) for path in paths]
        data = trial.dataset
        tests = [accuracy(member.predict(data.x_test, verbose=0), data.y_test) for member in members]
        first = trial.earlier.get(step.name)  # seed 0's row: the saved networks must be this run's
        if first and not np.isclose(tests[0], first["test_accuracy"]):
            raise TrainingError(f"the saved {paths[0].name} scores {tests[0]:.2%}, not the {first['test_accuracy']:.2%} "
                                f"of step {step.name!r}: it is from another run; run that step again")
        ensemble = averaged(members)
        return {"name": ensemble.name, "params": ensemble.count_params(), "epochs_run": first and first["epochs_run"],
                "val_accuracy": accuracy(ensemble.predict(data.x_val, verbose=0), data.y_val),
                "test_accuracy": accuracy(ensemble.predict(data.x_test, verbose=0), data.y_test),
                "member_test_accuracies": tests}
    return run


def recipe(name, model, note, dataset):
    """A final recipe's step (3 seeds, networks kept) and its ensemble's step."""
    final = Step(name, model, dataset=dataset, run=kept, note=note)
    return [final, Step(f"{name}: {ENSEMBLE_SIZE} networks averaged", model, dataset=dataset, seeds=1,
                        run=seeds_averaged(final),
                        note=f"the {ENSEMBLE_SIZE} networks above; each one's test accuracy is member_test_accuracies "
                             "in the JSON")]


STEPS = [
    *recipe("MNIST: mnist_best", "mnist_best", "settings fixed in advance (no comparison on validation)", "mnist"),
    *recipe("notMNIST: notmnist_best", "notmnist_best", "chosen on validation: results/bestchoices.md", "notmnist"),
    *recipe("Fashion-MNIST: fashion_best", "fashion_best", "settings fixed in advance (no comparison on validation)",
            "fashion"),
]
