"""experiments/: every tutorial runs end to end in --quick mode, and its models have the seed's sizes."""
import importlib
import json
import time
from pathlib import Path
from dataclasses import replace
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from conftest import SHARED_DATA, needs_data, tensorboard_scalars
import main as main_py
import plots
from data import CLASS_NAMES, load_dataset
from experiments import best, fast, geron, l42, ntu, runner, spark, speed
from experiments.__main__ import EXPERIMENTS, main
from model import MODELS, RandomAffine, RandomShift, get_model



# The --quick runs, cut into groups of consecutive steps that train in a few seconds each (an
# ensemble alone), so that the tests spread over the cores: the index of each group's first step.
# l42's last step, the choice among the rungs above it, is tested on its own (below).
QUICK_GROUPS = {"batchnorm": [0], "best": [0], "bestchoices": [0], "fast": [0, 4, 6, 7], "fastchoices": [0], "geron": [0, 10, 20],
                "l42": [0, 7, 10, 13], "ladder": [0, 7, 10, 11, 12], "ntu": [0, 8, 24], "spark": [0, 4, 6, 7, 8]}
# Steps that are another step with other numbers (NUMBERS, HYPERPARAMETER_NUMBERS), another Keras
# optimizer or other data options only: the quick run of that step covers their code, and
# test_variants_differ_only_as_they_say checks the difference. Each optimizer still trains in some
# quick run (RMSprop in l42's).
VARIANTS = {
    **{("bestchoices", longer_wider_or_deeper): "notMNIST: best_cnn, rotations, zooms and shifts, 30 epochs"
       for longer_wider_or_deeper in ["notMNIST: best_cnn, rotations, zooms and shifts, 60 epochs",
                                      "notMNIST: best_cnn, 1.5x wider (48, 96, 192 channels), 30 epochs",
                                      "notMNIST: best_cnn, deeper (3 convolutions a stage), 30 epochs"]},
    ("fastchoices", "8 epochs, peak learning rate 0.005 (the trial run)"): "6 epochs, peak learning rate 0.005 (fast_cnn)",
    ("fastchoices", "6 epochs, peak learning rate 0.0025"): "6 epochs, peak learning rate 0.005 (fast_cnn)",
    ("fastchoices", "6 epochs, peak learning rate 0.01"): "6 epochs, peak learning rate 0.005 (fast_cnn)",
    ("geron", "SELU, 100 layers, each pixel standardised (as the seed)"): "SELU, 100 layers, LeCun init, standardised inputs",
    ("geron", "l2 (0.01), each pixel standardised (as the seed)"): "l2 (0.01)",
    ("geron", "dropout (0.2), each pixel standardised (as the seed)"): "dropout (0.2)",
    ("geron", "max-norm (1.0), each pixel standardised (as the seed)"): "max-norm (1.0)",
    **{("ntu", sweep): "overtraining: 784-30-10 softmax, 10,000 images"
       for sweep in ["SGD lr 0.2", "SGD lr 2", "SGD lr 20", "SGD lr 2, batch 10", "SGD lr 2, batch 30",
                     "SGD lr 2, batch 300"]},
    ("batchnorm", "MNIST: fast_cnn, statistics recomputed after training"):
        "fast_cnn, statistics recomputed after training",
    **{("fast", rule): "fast_cnn: one-cycle, label smoothing, batch norm, shifts"
       for rule in ["batch 512, peak learning rate x2 (square-root rule)", "batch 512, peak learning rate x4 (linear rule)"]},
    ("ntu", "more data: 784-30-10 softmax, all images"): "784-30-10 softmax + cross-entropy, SGD lr 1, batch 30",
    **{("ntu", other): "overtraining: 784-30-10 softmax, 10,000 images" for other in ["RMSprop lr 0.001", "Adadelta lr 1.0"]},
    **{("ntu", deeper): "784-(256 x 2)-10, 40 epochs"
       for deeper in ["784-(256 x 4)-10, 40 epochs", "784-(256 x 8)-10, 100 epochs"]},
    **{("ntu", kernel): "CNN, 5x5 kernels" for kernel in ["CNN, 3x3 kernels (practice 01)", "CNN, 7x7 kernels (practice 01)"]},
}
# Settings and model options that change the numbers, not the code run (an optimizer: Keras's code, by name).
NUMBERS = {"epochs", "learning_rate", "batch_size", "optimizer"}
HYPERPARAMETER_NUMBERS = {"kernel_size", "hidden_layers", "width", "depth"}
# best's notMNIST and Fashion-MNIST rows run its MNIST rows' code (kept, seeds_averaged) with another
# dataset and model: test_main_py_trains_seed_0_of_a_best_row_exactly runs notMNIST's recipe, and
# test_model builds every model and checks every augmentation; test_best_scores_the_networks_...
# runs the test-time augmentation steps.
SAME_CODE = {("best", step.name) for step in best.STEPS if not step.name.startswith("MNIST")}
TESTED_APART = {("l42", "best by validation, on the hidden test set"), *VARIANTS, *SAME_CODE}


def quick_groups():
    """(experiment, the names of a group of its steps) for every group of QUICK_GROUPS."""
    for name, starts in QUICK_GROUPS.items():
        names = [step.name for step in importlib.import_module(f"experiments.{name}").STEPS]
        for start, end in zip(starts, starts[1:] + [len(names)]):
            group = [step for step in names[start:end] if (name, step) not in TESTED_APART]
            if group:
                yield pytest.param(name, group, id=f"{name}-{start}")


def test_the_quick_groups_hold_every_step_once():
    assert sorted(QUICK_GROUPS) == EXPERIMENTS
    tested = [(param.values[0], step) for param in quick_groups() for step in param.values[1]]
    every = [(name, step.name) for name in EXPERIMENTS for step in importlib.import_module(f"experiments.{name}").STEPS]
    assert sorted(tested + list(TESTED_APART)) == sorted(every)


@pytest.mark.parametrize("name, variant", sorted(VARIANTS))
def test_variants_differ_only_as_they_say(name, variant):
    steps = {step.name: step for step in importlib.import_module(f"experiments.{name}").STEPS}
    one, base = steps[variant], steps[VARIANTS[name, variant]]
    assert (one.model, one.run) == (base.model, base.run)
    assert changed_keys(one.hyperparameters, base.hyperparameters) <= HYPERPARAMETER_NUMBERS
    if one.dataset != base.dataset:  # the same step on another dataset
        assert one.dataset in CLASS_NAMES and (one.data, one.training) == (base.data, base.training)
    elif "each pixel" in variant:
        assert one.data == {**base.data, "standardize": "pixel"} and one.training == base.training
    else:
        assert one.data == base.data and changed_keys(one.training, base.training) <= NUMBERS
        assert (one.hyperparameters, runner.settings_for(one)) != (base.hyperparameters, runner.settings_for(base))


def changed_keys(one, other):
    """The keys whose values differ between two dicts (a key missing from one counts)."""
    return {key for key in {**one, **other} if one.get(key) != other.get(key)}


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("name, steps", quick_groups())
def test_quick_run_reports_every_step(name, steps, tmp_path, capsys, monkeypatch):
    # --quick's 200 images hold fewer than 200 sandals and shirts: every draw of task B is all of them
    monkeypatch.setattr(geron, "TASK_B_DRAWS", 2)
    monkeypatch.setattr(best, "NETWORKS", tmp_path)  # best's ensembles average the networks of every seed
    monkeypatch.setattr(best, "ENSEMBLE_SIZE", 2)
    seeds = best.ENSEMBLE_SIZE if name == "best" else 1
    main([name, "--quick", "--seeds", str(seeds), "--steps", *steps, "--out", str(tmp_path), "--data-dir", str(SHARED_DATA)])
    report = json.loads((tmp_path / f"{name}-quick.json").read_text())
    assert [row["step"] for row in report["steps"]] == steps and "partial" not in report
    defined = {step.name: step for step in importlib.import_module(f"experiments.{name}").STEPS}
    for row in report["steps"]:
        assert 0 <= row["measured"] <= 100 and row["seeds"] == min(seeds, defined[row["step"]].seeds or seeds)
        assert row["epochs_run"] >= 1
        if not defined[row["step"]].test:  # a choice: the test split is not read
            assert row["measured_on"] == "validation" and row["test"] is None
            assert not any("test_accuracy" in run for run in row["runs"])
        assert row["difference"] is None or abs(row["difference"] - (row["measured"] - row["published"])) < 1e-9
    markdown = (tmp_path / f"{name}-quick.md").read_text()
    assert all(f"| {step} |" in markdown for step in steps)
    assert "| step | published | measured" in capsys.readouterr().out


def test_l42_picks_its_final_model_on_validation_only(data_dir):
    """The last step chooses among the rungs above by validation accuracy, ties going to the lower
    validation loss; it reuses the rungs this command has run and trains the others."""
    rungs, final = l42.STEPS[:-1], l42.STEPS[-1]
    earlier = {step.name: {"val_accuracy": 0.5, "val_loss": 1.0, "test_accuracy": 0.99} for step in rungs[1:]}
    earlier[rungs[3].name] = {"val_accuracy": 0.9, "val_loss": 0.5, "test_accuracy": 0.1}
    earlier[rungs[5].name] = {"val_accuracy": 0.9, "val_loss": 0.4, "test_accuracy": 0.2}  # the tie's winner
    trial = runner.Trial(final, load_dataset("mnist", data_dir), runner.settings_for(final, quick=True), seed=2,
                         quick=True, earlier=earlier)
    result = l42.choose_by_validation(trial)
    assert result["chosen"] == rungs[5].name and result["test_accuracy"] == 0.2
    assert result["candidates_val_accuracy"].keys() == {step.name for step in rungs}  # the first rung: trained here
    assert result["note"] == f"seed 2: picked {rungs[5].name} (validation 90.00%)"


def test_best_scores_the_networks_of_this_run_or_says_what_is_missing(tmp_path, monkeypatch, data_dir):
    """best's later steps score the networks its recipe step saved: averaged, with test-time
    augmentation, or both; a choice reads the validation split alone."""
    from train import TrainingError, save_model
    monkeypatch.setattr(best, "NETWORKS", tmp_path)
    final, averaged, choice, with_tta, averaged_with_tta = best.recipe("tiny", "l42_mlp", "", "mnist",
                                                                         tta_choices=["mirror"], tta="shifts")
    assert (choice.test, with_tta.test) == (False, True) and averaged_with_tta.seeds == 1
    dataset = load_dataset("mnist", data_dir, limit=200)
    trial = runner.Trial(averaged, dataset, runner.settings_for(averaged, quick=True), seed=0, quick=True)
    def save(seed):
        save_model(get_model("l42_mlp", (28, 28, 1), 10, hidden_size=8), best.network_path(final, seed, True), "mnist")
    save(0)
    with pytest.raises(TrainingError, match="^no saved network tiny-seed1-quick.keras, tiny-seed2-quick.keras: "
                                            "run step 'tiny' with 3 seeds first$"):
        averaged.run(trial)
    save(1), save(2)
    first = keras.models.load_model(best.network_path(final, 0, True))
    val, test = (best.accuracy(first.predict(x), y) for x, y in [(dataset.x_val, dataset.y_val),
                                                                 (dataset.x_test, dataset.y_test)])
    trial.earlier = {"tiny": {"val_accuracy": val + 0.01, "epochs_run": 1}}
    with pytest.raises(TrainingError, match="tiny-seed0-quick.keras scores .* on validation, not the .* of step "
                                            "'tiny': it is from another run; run that step again"):
        averaged.run(trial)
    trial.earlier = {"tiny": {"val_accuracy": val, "epochs_run": 1}}
    result = averaged.run(trial)
    assert result["member_test_accuracies"][0] == test and 0 <= result["test_accuracy"] <= 1
    assert result["params"] == 3 * first.count_params()
    tta = with_tta.run(trial)
    shifted = fast.predict_with_tta(first, dataset.x_test)  # the image and its 4 neighbours
    assert tta["test_accuracy"] == best.accuracy(shifted, dataset.y_test) and tta["epochs_run"] == 1
    assert averaged_with_tta.run(trial)["member_test_accuracies"][0] == tta["test_accuracy"]
    chosen = choice.run(replace(trial, step=choice))
    assert "test_accuracy" not in chosen
    mirrored = (first.predict(dataset.x_val) + first.predict(dataset.x_val[:, :, ::-1])) / 2
    assert chosen["val_accuracy"] == best.accuracy(mirrored, dataset.y_val)


@needs_data
def test_main_py_trains_seed_0_of_a_best_row_exactly(tmp_path, monkeypatch):
    """Each recipe of experiments/best.py is a model name, and main.py trains it as the experiment
    does: seed 0's accuracies are equal, to the last bit."""
    monkeypatch.setattr(best, "NETWORKS", tmp_path)  # not the repository's networks/
    step = "notMNIST: notmnist_best"
    main(["best", "--quick", "--seeds", "1", "--steps", step, "--out", str(tmp_path), "--data-dir", str(SHARED_DATA)])
    row, = json.loads((tmp_path / "best-quick.json").read_text())["steps"]
    main_py.main(["--dataset", "notmnist", "--model", "notmnist_best", "--limit", str(runner.QUICK_LIMIT),
                  "--epochs", str(runner.QUICK_EPOCHS), "--seed", "0", "--data-dir", str(SHARED_DATA),
                  "--results", str(tmp_path / "main.json")])
    result, = json.loads((tmp_path / "main.json").read_text())["models"]
    assert (result["val_accuracy"], result["test_accuracy"]) == (row["runs"][0]["val_accuracy"],
                                                                 row["runs"][0]["test_accuracy"])


def test_a_step_finds_the_results_of_the_steps_done_before_it(data_dir):
    """Trial.earlier: the rows this command ran, and those an earlier, stopped run of it finished."""
    seen = []

    def look(trial):
        seen.append(sorted(trial.earlier))
        return {"test_accuracy": 0.5, "epochs_run": 1}

    experiment = SimpleNamespace(DATASET="mnist", STEPS=[
        runner.Step("first", "l42_mlp", training={"epochs": 1}), runner.Step("second", None, run=look)])
    finished = [{"step": "carried over", "runs": [{"test_accuracy": 0.4}]}]
    rows = list(runner.run_experiment(experiment, seeds=1, data_dir=data_dir, done=finished))
    assert [row["step"] for row in rows] == ["first", "second"] and seen == [["carried over", "first"]]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_models_have_the_published_parameter_counts(name):
    """PUBLISHED_PARAMS: (builder, options, count) for every model whose summary the seed prints."""
    for builder, options, count in getattr(importlib.import_module(f"experiments.{name}"), "PUBLISHED_PARAMS", []):
        assert get_model(builder, (28, 28, 1), 10, **options).count_params() == count, builder


@needs_data
def test_plots_for_each_step(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "ROBUSTNESS_IMAGES", 50)  # rotated 19 ways: the slow part of the pictures
    main(["spark", "--quick", "--seeds", "1", "--steps", "+ shifts (10%)",
          "--out", str(tmp_path), "--plots", str(tmp_path / "plots"), "--data-dir", str(SHARED_DATA),
          "--tensorboard", str(tmp_path / "logs")])
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["shifts_10"]
    assert (tmp_path / "plots" / "shifts_10" / "mnist-spark_finetuned-augmentation.png").exists()
    assert (tmp_path / "plots" / "shifts_10" / "mnist-learning_curves.png").exists()
    # TensorBoard: a folder per step and seed, whose last epoch is the report's (no early stopping here)
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["shifts_10"]
    report = {row["step"]: row["runs"][0] for row in json.loads((tmp_path / "spark-quick.json").read_text())["steps"]}
    for step, folder in [("+ shifts (10%)", "shifts_10")]:
        logged = tensorboard_scalars(tmp_path / "logs" / folder / "seed0" / "train")
        assert len(logged["epoch_accuracy"]) == report[step]["epochs_run"] == 1
        assert logged["epoch_accuracy"][-1] == pytest.approx(report[step]["train_accuracy"], rel=1e-6)


def test_a_step_that_trains_several_models_logs_each_in_its_own_folder():
    trial = runner.Trial(step=None, dataset=None, settings=None, seed=0, log_dir=Path("logs/step/seed0"))
    assert trial.logs("teacher") == Path("logs/step/seed0/teacher")
    assert runner.Trial(step=None, dataset=None, settings=None, seed=0).logs("teacher") is None


def test_tensorboard_without_tensorboard_installed_is_refused(tmp_path, monkeypatch, capsys):
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "tensorboard" else find_spec(name))
    with pytest.raises(SystemExit) as exit:
        main(["spark", "--quick", "--tensorboard", str(tmp_path / "logs"), "--out", str(tmp_path)])
    assert exit.value.code == 2 and "argument --tensorboard: " in (err := capsys.readouterr().err)
    assert "pip install tensorboard" in err and list(tmp_path.iterdir()) == []


def test_tensorboard_folder_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("kept")
    with pytest.raises(SystemExit) as exit:
        main(["spark", "--quick", "--tensorboard", str(tmp_path / "file"), "--out", str(tmp_path)])
    assert exit.value.code == 2
    assert f"argument --tensorboard: {tmp_path}/file is a file, not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@needs_data
def test_a_stopped_run_keeps_the_steps_it_finished_and_the_same_command_carries_on(tmp_path, monkeypatch):
    ran, stop_at = [], [2]  # stop when the second step starts, as if the user pressed Ctrl-C there

    def counted(trial):
        ran.append(trial.step.name)
        if len(ran) == stop_at[0]:
            raise KeyboardInterrupt
        return real_run_step(trial)

    first, second = (step.name for step in ntu.STEPS[:2])  # two steps that train in a second
    real_run_step = runner.run_step
    monkeypatch.setattr(runner, "run_step", counted)
    command = ["ntu", "--quick", "--seeds", "1", "--steps", first, second,
               "--out", str(tmp_path), "--data-dir", str(SHARED_DATA)]
    with pytest.raises(KeyboardInterrupt):
        main(command)
    report = json.loads((tmp_path / "ntu-quick.json").read_text())
    assert [row["step"] for row in report["steps"]] == [first]
    assert report["partial"] == "1 of 2 steps done"
    assert "**Partial: 1 of 2 steps done**" in (tmp_path / "ntu-quick.md").read_text()

    stop_at[0] = 4  # --fresh starts from the first step again, and is stopped at the second again
    with pytest.raises(KeyboardInterrupt):
        main(command + ["--fresh"])
    assert ran == [first, second, first, second]

    stop_at[0] = None  # the same command carries on with the unfinished step, and only that one
    main(command)
    finished = json.loads((tmp_path / "ntu-quick.json").read_text())
    assert ran[4:] == [second] and "partial" not in finished
    assert [row["step"] for row in finished["steps"]] == [first, second]
    main(command)  # a finished report is not carried on: every step runs again
    assert ran[5:] == [first, second]


@needs_data
def test_a_step_that_diverges_ends_the_run_with_a_message_and_keeps_the_steps_before_it(tmp_path, monkeypatch, capsys):
    from train import TrainingError
    def diverge_at_the_second_step(trial):
        if trial.step.name == "+ L2 (1e-4)":
            raise TrainingError("The loss became nan at epoch 1, batch 3: training diverged.")
        return real_run_step(trial)
    real_run_step = runner.run_step
    monkeypatch.setattr(runner, "run_step", diverge_at_the_second_step)
    with pytest.raises(SystemExit) as stop:
        main(["spark", "--quick", "--seeds", "1", "--steps", "baseline CNN", "+ L2 (1e-4)",
              "--out", str(tmp_path), "--data-dir", str(SHARED_DATA)])
    assert stop.value.code == "error: + L2 (1e-4) (seed 0): The loss became nan at epoch 1, batch 3: training diverged."
    report = json.loads((tmp_path / "spark-quick.json").read_text())
    assert [row["step"] for row in report["steps"]] == ["baseline CNN"] and report["partial"] == "1 of 2 steps done"


def test_a_mistyped_setting_in_a_step_stops_the_run_before_it_starts(tmp_path, monkeypatch):
    bad = runner.Step("typo", "l42_mlp", training={"learning_rat": 0.1})
    monkeypatch.setattr(ntu, "STEPS", [*ntu.STEPS[:1], bad])
    with pytest.raises(SystemExit) as stop:
        main(["ntu", "--quick", "--out", str(tmp_path)])
    assert stop.value.code.startswith("error: ntu, step 'typo': unknown training setting learning_rat: the settings")
    assert list(tmp_path.iterdir()) == []


def test_unknown_step_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["spark", "--steps", "no such step", "--quick"])
    assert "spark has no step no such step" in capsys.readouterr().err


@pytest.fixture
def small_speed_benchmark(monkeypatch):
    """The benchmark's lists cut to a case or two each, of small networks (the full lists: below)."""
    augmentations, warps = speed.augmentations(), speed.warps()
    monkeypatch.setattr(speed, "contenders", lambda: [("l42_mlp", "l42_mlp", {}),
                                                      ("fast_cnn + augmentation", "fast_cnn", {"augment": True})])
    monkeypatch.setattr(speed, "augmentations", lambda: augmentations[1:2])  # RandomShift on fast_cnn
    monkeypatch.setattr(speed, "warps", lambda: warps[:1])  # the same, against affine_transform
    monkeypatch.setattr(speed, "OPTIONS_MODEL", "l42_mlp")


@needs_data
@pytest.mark.slow
def test_the_speed_benchmark_times_steps_and_augmentations(small_speed_benchmark, tmp_path):
    main(["speed", "--tiny", "--parts", "throughput", "augmentation", "--out", str(tmp_path),
          "--data-dir", str(SHARED_DATA)])
    report = json.loads((tmp_path / "speed-tiny-throughput-augmentation.json").read_text())
    assert not {"warps", "speed_options", "runs", "time_to_accuracy"} & set(report)
    assert [row["model"] for row in report["throughput"]] == ["l42_mlp", "fast_cnn + augmentation"]
    assert all(row["ms_per_step"] > 0 and row["ratio_to_reference"] > 0 for row in report["throughput"])
    [cost] = report["augmentation_cost"]
    assert cost["ms_per_step_with"] > 0 and cost["ms_per_step_without"] > 0
    assert cost["share_range"][0] <= cost["share"] <= cost["share_range"][1]
    markdown = (tmp_path / "speed-tiny-throughput-augmentation.md").read_text()
    assert "## Throughput" in markdown and "## What augmentation costs" in markdown and "## Speed options" not in markdown
    assert "| RandomShift (model.py) | fast_cnn |" in markdown


@needs_data
@pytest.mark.slow
def test_the_speed_benchmark_times_warps_speed_options_and_the_time_to_accuracy(small_speed_benchmark, tmp_path,
                                                                                 capsys):
    main(["speed", "--tiny", "--parts", "warps", "options", "accuracy", "--out", str(tmp_path),
          "--data-dir", str(SHARED_DATA)])
    report = json.loads((tmp_path / "speed-tiny-warps-options-accuracy.json").read_text())
    assert not {"throughput", "augmentation_cost"} & set(report)
    [warp] = report["warps"]
    assert warp["ms_per_step_by_hand"] > 0 and warp["ratio_range"][0] <= warp["ratio"] <= warp["ratio_range"][1]
    assert [(run["seed"], run["epochs"]) for run in report["runs"]] == [(0, 1)]
    assert [row["target"] for row in report["time_to_accuracy"]] == speed.TARGETS
    assert report["peak_memory_mib"]["at_end"]["host"] > 0
    options = [row["option"] for row in report["speed_options"]]
    assert options == [label for label, _ in speed.SPEED_OPTIONS] and report["speed_options"][0]["speed_up"] == 1
    for row in report["speed_options"]:
        low, high = row["speed_up_range"]
        assert row["us_per_image"] > 0 and low <= row["speed_up"] <= high
    markdown = (tmp_path / "speed-tiny-warps-options-accuracy.md").read_text()
    assert "## The warps" in markdown and "| RandomShift | fast_cnn |" in markdown
    assert "## Speed options" in markdown and "## Time to accuracy: fast_cnn" in markdown
    assert "## Time to accuracy: fast_cnn" in capsys.readouterr().out


def test_the_speed_benchmark_times_every_model_augmentation_and_warp():
    """What the full benchmark measures: every model, with and without its augmentation; each
    augmentation and warp with a network that builds, with it and without it."""
    timed = [label for label, _, _ in speed.contenders()]
    assert set(MODELS) <= set(timed) and "spark_finetuned + augmentation" in timed
    costs = {(row[0].split()[0].rstrip(":"), row[1]): row for row in speed.augmentations()}
    assert set(costs) == {("RandomShift", "spark_finetuned"), ("RandomShift", "fast_cnn"),
                          ("RandomAffine", "ladder_dropout"), ("keras.layers.RandomTranslation", "spark_finetuned")}
    warps = {(row[0].split()[0], row[1]): row for row in speed.warps()}
    assert set(warps) == {("RandomShift", "fast_cnn"), ("RandomShift", "spark_finetuned"),
                          ("RandomAffine", "ladder_dropout")}
    for _, _, first, second in [*costs.values(), *warps.values()]:
        for model, hyperparameters in (first, second):
            assert get_model(model, (28, 28, 1), 10, **hyperparameters).output_shape == (None, 10)


def test_the_speed_timer_counts_training_steps_not_validation():
    """Our loop validates every epoch and the plain reference does not: timing validation would
    charge our loop for it. A validation made 2 s slower must not show in the epoch's seconds."""
    class SlowValidation(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            time.sleep(2)

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = np.zeros((64, 4), "float32"), np.zeros(64, "int32")
    timer = speed.EpochTimer()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[timer, SlowValidation()])
    without = list(timer.seconds)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x, y),
              callbacks=[timer, SlowValidation()])
    assert len(timer.seconds) == 2 and max(timer.seconds) < 1 + max(without)  # 2 s more if it counted


def test_time_to_accuracy_takes_each_seeds_cheapest_budget_that_reached_the_target():
    runs = [{"seed": 0, "epochs": 2, "seconds": 10, "test_accuracy": 99.1},
            {"seed": 0, "epochs": 4, "seconds": 20, "test_accuracy": 99.45},
            {"seed": 1, "epochs": 2, "seconds": 11, "test_accuracy": 98.9},
            {"seed": 1, "epochs": 4, "seconds": 21, "test_accuracy": 99.3},
            {"seed": 2, "epochs": 2, "seconds": 12, "test_accuracy": 99.4},
            {"seed": 2, "epochs": 4, "seconds": 22, "test_accuracy": 99.2}]
    rows = {row["target"]: row for row in speed.summarise(runs)}
    assert rows[99.0]["seconds_per_seed"] == [10, 21, 12] and rows[99.0]["median_seconds"] == 12
    assert rows[99.4]["seconds_per_seed"] == [20, None, 12] and rows[99.4]["median_seconds"] == 20
    assert rows[99.5]["reached"] == 0 and rows[99.5]["median_seconds"] is None


def test_test_time_shifts_move_every_pixel_by_one_and_bring_in_black():
    images = np.arange(2 * 4 * 5, dtype="float32").reshape(2, 4, 5, 1) + 1
    down, left = fast.shifted(images, 1, 0), fast.shifted(images, 0, -1)
    assert (down[:, 1:] == images[:, :-1]).all() and (down[:, 0] == 0).all()
    assert (left[:, :, :-1] == images[:, :, 1:]).all() and (left[:, :, -1] == 0).all()
    assert (fast.shifted(images, 0, 0) == images).all() and (0, 0) in fast.TTA_SHIFTS


def test_a_published_validation_accuracy_is_compared_with_ours_on_validation():
    runs = [{"val_accuracy": 0.90, "test_accuracy": 0.88, "epochs_run": 10, "seconds": 1.0},
            {"val_accuracy": 0.92, "test_accuracy": 0.86, "epochs_run": 10, "seconds": 1.0}]
    on_validation = runner.summarise(runner.Step("a", "l42_mlp", published=90.0, published_on="validation"), runs)
    on_test = runner.summarise(runner.Step("b", "l42_mlp", published=90.0), runs)
    assert on_validation["measured"] == pytest.approx(91.0) and on_validation["difference"] == pytest.approx(1.0)
    assert on_test["measured"] == pytest.approx(87.0) and on_test["difference"] == pytest.approx(-3.0)
    assert on_validation["test"] == on_test["test"] == pytest.approx(87.0)
    assert "91.00% ± 1.00 (validation; test 87.00%; 2 seeds)" in runner.table([on_validation])
    assert "87.00% ± 1.00 (test; 2 seeds)" in runner.table([on_test])


def test_only_an_unfinished_report_of_the_same_command_backend_and_device_is_carried_on(tmp_path):
    import keras
    about = {"command": "python -m experiments spark", "backend": keras.backend.backend(), "device": "CPU (x86_64, 2 cores)"}
    rows = [{"step": "baseline CNN"}]
    def finished(wanted=("baseline CNN", "+ L2"), **changes):
        (tmp_path / "r.json").write_text(json.dumps({**about, "partial": "1 of 8 steps done", "steps": rows, **changes}))
        return runner.finished_rows(tmp_path / "r.json", about["command"], about["device"], wanted)
    assert finished() == rows
    assert finished(command="python -m experiments spark --seeds 1") == []
    assert finished(device="GPU (NVIDIA H100 80GB HBM3)") == [] and finished(backend="jax" if about["backend"] != "jax" else "torch") == []
    assert finished(partial=None) == rows  # finished before the experiment gained the step "+ L2"
    assert finished(wanted=["baseline CNN"], partial=None) == []  # finished: everything runs again
    assert finished(wanted=["+ L2"]) == []  # a step no longer wanted is left out
    (tmp_path / "r.json").write_text("{not json")
    assert runner.finished_rows(tmp_path / "r.json", about["command"], about["device"], ["+ L2"]) == []
    assert runner.finished_rows(tmp_path / "missing.json", about["command"], about["device"], ["+ L2"]) == []


def test_a_rewritten_report_keeps_its_hand_written_notes(tmp_path):
    """A rerun rewrites the table, and keeps what was written by hand under it (from the first `## `)."""
    row = {"step": "baseline CNN", "published": None, "difference": None, "measured_on": "test", "test": 99.0,
           "measured": 99.0, "std": 0.1, "seeds": 3, "epochs_run": 12.0, "seconds": 100.0, "note": ""}
    def report(measured):
        runner.write_report(tmp_path, "spark", spark, [{**row, "measured": measured}], "python -m experiments spark", "CPU")
        return (tmp_path / "spark.md").read_text()
    notes = "## Reading the ladder\n\nWritten by hand.\n\n### Its second part\n"
    (tmp_path / "spark.md").write_text(report(99.0) + "\n" + notes)
    rewritten = report(98.5)
    assert "98.50% ± 0.10" in rewritten and "99.00% ± 0.10" not in rewritten
    assert rewritten.endswith("|\n\n" + notes) and rewritten.count("## Reading") == 1
    assert report(98.5) == rewritten  # and again: nothing added twice


def test_the_hand_written_warps_make_the_same_images_as_keras_affine_transform():
    """The speed benchmark's comparison is fair: the same draws give the same images."""
    images = np.random.default_rng(0).random((64, 28, 28, 1)).astype("float32")
    with_keras = keras.ops.convert_to_numpy(RandomShift(0.1, seed=5)(images, training=True))
    by_hand = keras.ops.convert_to_numpy(speed.ShiftByMatrices(0.1, seed=5)(images, training=True))
    np.testing.assert_array_equal(by_hand, with_keras)  # whole-pixel moves, black fill: exactly
    with_keras = keras.ops.convert_to_numpy(RandomAffine(seed=5)(images, training=True))
    by_hand = keras.ops.convert_to_numpy(speed.AffineByGathers(seed=5)(images, training=True))
    np.testing.assert_allclose(by_hand, with_keras, atol=1e-5)  # bilinear: to rounding
    assert not np.allclose(with_keras, images, atol=1e-2)


def test_the_last_epochs_weights_are_kept_before_early_stopping_restores_the_best():
    from experiments.spark import LastEpochWeights
    net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    net.compile(optimizer="sgd", loss="mse")
    last = LastEpochWeights()
    # "max" on a falling loss: epoch 1 is the best, epoch 2 ends training with other weights
    best = keras.callbacks.EarlyStopping(monitor="loss", mode="max", patience=1, restore_best_weights=True)
    x = np.linspace(-1, 1, 32, dtype="float32")[:, None]
    history = net.fit(x, 3 * x + 1, epochs=5, verbose=0, callbacks=[last, best])
    assert len(history.history["loss"]) == 2 and best.best_epoch == 0
    np.testing.assert_array_equal(net.get_weights()[0], best.best_weights[0])
    assert not np.allclose(last.weights[0], net.get_weights()[0])
