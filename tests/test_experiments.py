"""experiments/: every tutorial runs end to end in --quick mode, and its models have the seed's sizes."""
import importlib
import json
import time

import keras
import numpy as np
import pytest

from conftest import SHARED_DATA
from experiments import fast, runner, speed
from experiments.__main__ import EXPERIMENTS, main
from model import MODELS, get_model

needs_data = pytest.mark.skipif(not (SHARED_DATA / "MANIFEST.md").exists(), reason=f"no real data in {SHARED_DATA}")


@needs_data
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_quick_run_reports_every_step(name, tmp_path, capsys):
    main([name, "--quick", "--seeds", "1", "--out", str(tmp_path), "--data-dir", str(SHARED_DATA)])
    experiment = importlib.import_module(f"experiments.{name}")
    report = json.loads((tmp_path / f"{name}-quick.json").read_text())
    assert [row["step"] for row in report["steps"]] == [step.name for step in experiment.STEPS]
    for row in report["steps"]:
        assert 0 <= row["measured"] <= 100 and row["seeds"] == 1 and row["epochs_run"] >= 1
        assert row["difference"] is None or abs(row["difference"] - (row["measured"] - row["published"])) < 1e-9
    markdown = (tmp_path / f"{name}-quick.md").read_text()
    assert all(f"| {step.name} |" in markdown for step in experiment.STEPS)
    assert "| step | published | measured" in capsys.readouterr().out


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_models_have_the_published_parameter_counts(name):
    """PUBLISHED_PARAMS: (builder, options, count) for every model whose summary the seed prints."""
    for builder, options, count in getattr(importlib.import_module(f"experiments.{name}"), "PUBLISHED_PARAMS", []):
        assert get_model(builder, (28, 28, 1), 10, **options).count_params() == count, builder


@needs_data
def test_plots_for_each_step(tmp_path):
    main(["spark", "--quick", "--seeds", "1", "--steps", "baseline CNN", "+ shifts (10%)",
          "--out", str(tmp_path), "--plots", str(tmp_path / "plots"), "--data-dir", str(SHARED_DATA)])
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["baseline_CNN", "shifts_10"]
    assert (tmp_path / "plots" / "shifts_10" / "mnist-spark_finetuned-augmentation.png").exists()
    assert (tmp_path / "plots" / "baseline_CNN" / "mnist-learning_curves.png").exists()


@needs_data
def test_a_stopped_run_keeps_the_steps_it_finished_and_the_same_command_carries_on(tmp_path, monkeypatch):
    ran, stop_at = [], [2]  # stop when the second step starts, as if the user pressed Ctrl-C there

    def counted(step, *args, **kwargs):
        ran.append(step.name)
        if len(ran) == stop_at[0]:
            raise KeyboardInterrupt
        return real_run_step(step, *args, **kwargs)

    real_run_step = runner.run_step
    monkeypatch.setattr(runner, "run_step", counted)
    command = ["spark", "--quick", "--seeds", "1", "--steps", "baseline CNN", "+ L2 (1e-4)",
               "--out", str(tmp_path), "--data-dir", str(SHARED_DATA)]
    with pytest.raises(KeyboardInterrupt):
        main(command)
    report = json.loads((tmp_path / "spark-quick.json").read_text())
    assert [row["step"] for row in report["steps"]] == ["baseline CNN"]
    assert report["partial"] == "1 of 2 steps done"
    assert "**Partial: 1 of 2 steps done**" in (tmp_path / "spark-quick.md").read_text()

    stop_at[0] = 4  # --fresh starts from the first step again, and is stopped at the second again
    with pytest.raises(KeyboardInterrupt):
        main(command + ["--fresh"])
    assert ran == ["baseline CNN", "+ L2 (1e-4)", "baseline CNN", "+ L2 (1e-4)"]

    stop_at[0] = None  # the same command carries on with the unfinished step, and only that one
    main(command)
    finished = json.loads((tmp_path / "spark-quick.json").read_text())
    assert ran[4:] == ["+ L2 (1e-4)"] and "partial" not in finished
    assert [row["step"] for row in finished["steps"]] == ["baseline CNN", "+ L2 (1e-4)"]
    main(command)  # a finished report is not carried on: every step runs again
    assert ran[5:] == ["baseline CNN", "+ L2 (1e-4)"]


@needs_data
def test_a_step_that_diverges_ends_the_run_with_a_message_and_keeps_the_steps_before_it(tmp_path, monkeypatch, capsys):
    from train import TrainingError
    def diverge_at_the_second_step(step, *args, **kwargs):
        if step.name == "+ L2 (1e-4)":
            raise TrainingError("The loss became nan at epoch 1, batch 3: training diverged.")
        return real_run_step(step, *args, **kwargs)
    real_run_step = runner.run_step
    monkeypatch.setattr(runner, "run_step", diverge_at_the_second_step)
    with pytest.raises(SystemExit) as stop:
        main(["spark", "--quick", "--seeds", "1", "--steps", "baseline CNN", "+ L2 (1e-4)",
              "--out", str(tmp_path), "--data-dir", str(SHARED_DATA)])
    assert stop.value.code == "error: + L2 (1e-4) (seed 0): The loss became nan at epoch 1, batch 3: training diverged."
    report = json.loads((tmp_path / "spark-quick.json").read_text())
    assert [row["step"] for row in report["steps"]] == ["baseline CNN"] and report["partial"] == "1 of 2 steps done"


def test_unknown_step_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["spark", "--steps", "no such step", "--quick"])
    assert "spark has no step no such step" in capsys.readouterr().err


@needs_data
def test_speed_benchmark_tiny_writes_its_table_and_json(tmp_path, capsys):
    main(["speed", "--tiny", "--out", str(tmp_path), "--data-dir", str(SHARED_DATA)])
    report = json.loads((tmp_path / "speed-tiny.json").read_text())
    timed = [row["model"] for row in report["throughput"]]
    assert set(MODELS) <= set(timed) and "spark_finetuned + augmentation" in timed
    assert all(row["ms_per_step"] > 0 and row["ratio_to_reference"] > 0 for row in report["throughput"])
    assert [(run["seed"], run["epochs"]) for run in report["runs"]] == [(0, 1)]
    assert [row["target"] for row in report["time_to_accuracy"]] == speed.TARGETS
    assert report["peak_memory_mib"]["at_end"]["host"] > 0
    markdown = (tmp_path / "speed-tiny.md").read_text()
    costs = {(row["augmentation"].split()[0].rstrip(":"), row["network"]): row for row in report["augmentation_cost"]}
    assert set(costs) == {("RandomShift", "spark_finetuned"), ("RandomShift", "fast_cnn"),
                          ("RandomAffine", "ladder_dropout"), ("keras.layers.RandomTranslation", "spark_finetuned")}
    for row in costs.values():
        low, high = row["share_range"]
        assert row["ms_per_step_with"] > 0 and row["ms_per_step_without"] > 0 and low <= row["share"] <= high
    options = [row["option"] for row in report["speed_options"]]
    assert options == [label for label, _ in speed.SPEED_OPTIONS] and report["speed_options"][0]["speed_up"] == 1
    for row in report["speed_options"]:
        low, high = row["speed_up_range"]
        assert row["us_per_image"] > 0 and low <= row["speed_up"] <= high
    assert "## Throughput" in markdown and "## What augmentation costs" in markdown and "## Speed options" in markdown
    assert "| keras.layers.RandomTranslation: Spark's shifts, stock | spark_finetuned |" in markdown
    assert "## Time to accuracy: fast_cnn" in capsys.readouterr().out


def test_the_speed_timer_counts_training_steps_not_validation():
    """Our loop validates every epoch and the plain reference does not: timing validation would
    charge our loop for it. A validation made 0.5 s slower must not show in the epoch's seconds."""
    class SlowValidation(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            time.sleep(0.5)

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = np.zeros((64, 4), "float32"), np.zeros(64, "int32")
    timer = speed.EpochTimer()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[timer, SlowValidation()])
    without = list(timer.seconds)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x, y),
              callbacks=[timer, SlowValidation()])
    assert len(timer.seconds) == 2 and max(timer.seconds) < 0.25 + max(without)


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


def test_only_a_partial_report_of_the_same_command_backend_and_device_is_carried_on(tmp_path):
    import keras
    about = {"command": "python -m experiments spark", "backend": keras.backend.backend(), "device": "CPU (x86_64, 2 cores)"}
    rows = [{"step": "baseline CNN"}]
    def finished(**changes):
        (tmp_path / "r.json").write_text(json.dumps({**about, "partial": "1 of 8 steps done", "steps": rows, **changes}))
        return runner.finished_rows(tmp_path / "r.json", about["command"], about["device"])
    assert finished() == rows
    assert finished(command="python -m experiments spark --seeds 1") == []
    assert finished(device="GPU (NVIDIA H100 80GB HBM3)") == [] and finished(backend="jax" if about["backend"] != "jax" else "torch") == []
    assert finished(partial=None) == []
    (tmp_path / "r.json").write_text("{not json")
    assert runner.finished_rows(tmp_path / "r.json", about["command"], about["device"]) == []
    assert runner.finished_rows(tmp_path / "missing.json", about["command"], about["device"]) == []
