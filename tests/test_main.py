"""main.py: flags, the results file, saved models, and end-to-end runs on real data."""
import functools
import json
import os
import re
import subprocess
import sys

from pathlib import Path

import keras
import numpy as np
import pytest

import main
import model
import quiet
import train
from conftest import ROOT, SHARED_DATA, tensorboard_scalars
from train import Training

RESULT_KEYS = {"name", "params", "epochs_run", "train_seconds", "train_accuracy",
               "val_accuracy", "test_accuracy", "test_loss"}


@pytest.mark.parametrize("flags, complaint", [
    (["--epochs", "-1"], "argument --epochs: must be a positive integer, got -1"),
    (["--epochs", "0"], "argument --epochs: must be a positive integer"),
    (["--batch-size", "0"], "argument --batch-size: must be a positive integer, got 0"),
    (["--learning-rate", "-0.1"], "argument --learning-rate: must be a positive number"),
    (["--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
    (["--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["--optimizer", "lbfgs"], "argument --optimizer: invalid choice: 'lbfgs'"),
    (["--model", "l42_mlp", "--augment"], "argument --augment: model l42_mlp has no augment option"),
    (["--model", "spark_baseline", "--l2-lambda", "0"], "argument --l2-lambda: model spark_baseline has no l2_lambda option"),
    (["--model", "spark_finetuned", "--l2-lambda", "-1"], "argument --l2-lambda: must be 0 or more, got -1"),
    (["--results", "/no/such/folder/r.json"], "argument --results: the folder of /no/such/folder/r.json"),
    (["--scale-learning-rate"], "argument --scale-learning-rate: needs --batch-size"),
    (["--precision", "float64"], "argument --precision: invalid choice: 'float64'"),
    (["--steps-per-execution", "0"], "argument --steps-per-execution: must be a positive integer, got 0"),
    (["--limit", "1"], "argument --limit: must be at least 2 (one image to validate on, one to train on), got 1"),
    (["--model", "l42_mlp", "fast_cnn", "--model", "l42_mlp"], "argument --model: l42_mlp named twice"),
])
def test_invalid_flags_are_named(flags, complaint, capsys):
    with pytest.raises(SystemExit) as exit:
        main.parse_args(flags)
    assert exit.value.code == 2 and complaint in capsys.readouterr().err


@pytest.mark.parametrize("flag, path, complaint", [
    ("--results", "folder", "{tmp}/folder is a folder, not a file"),
    ("--results", "file/r.json", "{tmp}/file is a file, not a folder"),
    ("--results", "read-only/r.json", "cannot write in {tmp}/read-only"),
    ("--save", "file", "{tmp}/file is a file, not a folder"),
    ("--save", "file/models", "{tmp}/file is a file, not a folder"),
    ("--save", "read-only/new/models", "cannot write in {tmp}/read-only"),
    ("--plots", "file", "{tmp}/file is a file, not a folder"),
    ("--checkpoints", "file", "{tmp}/file is a file, not a folder"),
    ("--tensorboard", "file", "{tmp}/file is a file, not a folder"),
])
def test_an_output_that_cannot_be_written_is_refused_before_training(flag, path, complaint, tmp_path, monkeypatch,
                                                                     capsys):
    (tmp_path / "file").write_text("kept")
    (tmp_path / "folder").mkdir()
    (tmp_path / "read-only").mkdir(mode=0o555)
    # As root, who may write anywhere, the mode alone would not do: os.access answers as for a user.
    access = os.access
    monkeypatch.setattr(os, "access", lambda place, mode: access(place, mode) and Path(place).name != "read-only")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit:
        main.main([flag, str(tmp_path / path)])
    assert exit.value.code == 2 and f"argument {flag}: {complaint.format(tmp=tmp_path)}" in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before and (tmp_path / "file").read_text() == "kept"


def test_tutorial_settings_with_overrides():
    settings = main.settings_for("spark_finetuned", main.parse_args(["--epochs", "3"]))
    assert settings == Training(optimizer="adam", learning_rate=0.001, batch_size=128, epochs=3, patience=5)
    no_stopping = main.parse_args(["--no-early-stopping", "--optimizer", "sgd", "--batch-size", "32"])
    assert main.settings_for("spark_finetuned", no_stopping).patience is None
    assert main.settings_for("l42_mlp", no_stopping).optimizer == "sgd"
    stopping = main.settings_for("l42_mlp", main.parse_args(["--early-stopping", "--learning-rate", "0.5"]))
    assert stopping.patience == main.DEFAULT_PATIENCE and stopping.learning_rate == 0.5
    moving = main.parse_args(["--model", "fast_cnn", "--batch-norm-statistics", "moving"])
    assert main.settings_for("fast_cnn", moving).batch_norm_statistics == "moving"
    assert main.settings_for("fast_cnn", main.parse_args([])).batch_norm_statistics == "recomputed"


def test_a_repeated_model_flag_adds_to_the_list():
    assert main.parse_args([]).model == main.DEFAULT_MODELS
    assert main.parse_args(["--model", "l42_mlp", "--model", "fast_cnn", "spark_baseline"]).model == [
        "l42_mlp", "fast_cnn", "spark_baseline"]
    assert main.DEFAULT_MODELS == ["l42_mlp", "spark_baseline"]  # not extended in place


def test_the_smallest_limit_trains_on_one_image_and_validates_on_one(data_dir, tmp_path, capsys):
    main.main(["--data-dir", str(data_dir), "--model", "l42_mlp", "--epochs", "1", "--limit", str(main.MIN_LIMIT),
               "--results", str(tmp_path / "r.json"), "--checkpoints", str(tmp_path / "ck")])
    assert "mnist: 1 training, 1 validation, 2 test images" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["models"][0]["epochs_run"] == 1


def test_speed_flags_and_learning_rate_scaled_to_the_batch():
    args = main.parse_args(["--batch-size", "512", "--scale-learning-rate", "--precision", "mixed_bfloat16",
                            "--steps-per-execution", "8"])
    adam = main.settings_for("spark_baseline", args)  # tuned for 128 images a step: 4x the batch
    assert adam.learning_rate == pytest.approx(0.002) and adam.batch_size == 512
    assert adam.precision == "mixed_bfloat16" and adam.steps_per_execution == 8
    assert main.settings_for("l42_mlp", args).learning_rate == pytest.approx(0.04)  # SGD: linear
    unscaled = main.settings_for("spark_baseline", main.parse_args(["--batch-size", "512"]))
    assert unscaled.learning_rate == 0.001 and unscaled.precision == "float32"


def test_train_compare_save_and_report(data_dir, tmp_path, capsys):
    results, saved = tmp_path / "results.json", tmp_path / "models"
    main.main(["--data-dir", str(data_dir), "--model", "l42_mlp", "spark_finetuned", "--epochs", "2",
               "--early-stopping", "--patience", "1", "--results", str(results), "--save", str(saved),
               "--checkpoints", str(tmp_path / "ck"), "--tensorboard", str(tmp_path / "logs")])
    out = capsys.readouterr().out
    assert "backend tensorflow" in out or f"backend {keras.backend.backend()}" in out
    assert "Total params: 2,443,714" in out  # the summary comes before training
    assert "Test accuracy on mnist (30 test images)" in out
    report = json.loads(results.read_text())
    assert {"dataset", "backend", "device", "seed", "models"} <= set(report)
    assert report["dataset"] == "mnist" and report["seed"] == 0
    assert [m["name"] for m in report["models"]] == ["l42_mlp", "spark_finetuned"]
    for m in report["models"]:
        assert RESULT_KEYS <= set(m) and 0 <= m["test_accuracy"] <= 1 and 1 <= m["epochs_run"] <= 2
    loaded = keras.models.load_model(saved / "spark_finetuned.keras")
    assert loaded.count_params() == 2_443_714
    assert sorted(p.name for p in saved.iterdir()) == ["l42_mlp.keras", "spark_finetuned.keras"]
    assert train.saved_dataset(saved / "l42_mlp.keras") == "mnist"  # predict.py names the classes from it
    for m in report["models"]:  # TensorBoard reads back each epoch, as the results have it
        run = tmp_path / "logs" / f"mnist-{m['name']}" / "seed0"
        logged = {part: tensorboard_scalars(run / part) for part in ("train", "validation")}
        np.testing.assert_allclose(logged["train"]["epoch_loss"], m["history"]["loss"], rtol=1e-6)
        np.testing.assert_allclose(logged["validation"]["epoch_accuracy"], m["history"]["val_accuracy"], rtol=1e-6)


def test_tensorboard_without_tensorflow_or_tensorboard_is_refused_before_training(tmp_path, monkeypatch, capsys):
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "tensorboard" else find_spec(name))
    with pytest.raises(SystemExit) as exit:
        main.main(["--tensorboard", str(tmp_path / "logs")])
    assert exit.value.code == 2
    assert "argument --tensorboard: " in (err := capsys.readouterr().err) and "pip install tensorboard" in err
    assert list(tmp_path.iterdir()) == []


def test_a_mistyped_setting_in_training_stops_the_run_with_its_name(data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(model.TRAINING, "l42_mlp", dict(optimizer="sgd", patiance=3))
    with pytest.raises(SystemExit) as exit:
        main.main(["--data-dir", str(data_dir), "--model", "l42_mlp", "--checkpoints", str(tmp_path / "ck")])
    assert exit.value.code.startswith("error: l42_mlp: unknown training setting patiance: the settings are ")
    assert not (tmp_path / "ck").exists()


def test_settings_that_hold_functions_train_and_report(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(model.TRAINING, "l42_mlp", dict(
        optimizer=functools.partial(keras.optimizers.SGD, learning_rate=0.05), batch_size=32, epochs=2,
        callbacks=[lambda: keras.callbacks.ReduceLROnPlateau(patience=1)]))
    args = ["--data-dir", str(data_dir), "--model", "l42_mlp", "--checkpoints", str(tmp_path / "ck"),
            "--results", str(tmp_path / "r.json")]
    main.main(args)
    assert json.loads((tmp_path / "r.json").read_text())["models"][0]["epochs_run"] == 2
    assert "=== l42_mlp: optimizer={'partial': " in capsys.readouterr().out  # named, not a memory address


def test_only_tensorflows_start_up_notes_are_dropped_from_stderr():
    notes = [b"I0000 00:00:1796200651.714935   10817 port.cc:153] oneDNN custom operations are on.",
             b"I0000 00:00:1796200651.715185   10817 cudart_stub.cc:31] Could not find cuda drivers on your machine",
             b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"]
    kept = [b"E0000 00:00:1796200654.241987   10817 cuda_dnn.cc:8579] Unable to register cuDNN factory",
            b"W0000 00:00:1796200654.241987   10817 gpu_device.cc:2] Cannot dlopen some GPU libraries.",
            b"Traceback (most recent call last):", b"ImportError: libcudart.so.12: cannot open shared object file"]
    assert all(quiet.LOADING_NOTES.fullmatch(line) for line in notes)
    assert not any(quiet.LOADING_NOTES.fullmatch(line) for line in kept)


def test_data_error_exits_with_message_and_writes_nothing(tmp_path, capsys):
    results = tmp_path / "results.json"
    with pytest.raises(SystemExit) as exit:
        main.main(["--data-dir", str(tmp_path / "missing"), "--results", str(results)])
    assert "error: The data directory" in str(exit.value.code) and "does not exist" in str(exit.value.code)
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_fails_ends_the_run_after_the_earlier_models_results(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(model.TRAINING, "spark_baseline", dict(optimizer="sgd", learning_rate=1e12, batch_size=16))
    with pytest.raises(SystemExit) as exit:
        main.main(["--data-dir", str(data_dir), "--model", "l42_mlp", "spark_baseline", "--epochs", "1",
                   "--results", str(tmp_path / "r.json"), "--checkpoints", str(tmp_path / "ck")])
    assert exit.value.code.startswith("error: spark_baseline: The loss became nan at epoch 1, by batch ")
    assert [m["name"] for m in json.loads((tmp_path / "r.json").read_text())["models"]] == ["l42_mlp"]
    assert re.search(r"^l42_mlp +\d", capsys.readouterr().out, re.MULTILINE)  # its row in the table
    # l42_mlp's checkpoint is kept, finished: the same command will not train it again.
    [kept] = (tmp_path / "ck").iterdir()
    assert "l42_mlp" in kept.name and json.loads((kept / "latest.json").read_text())["finished"]


def test_a_run_stopped_before_its_results_are_written_does_not_train_again(data_dir, tmp_path, monkeypatch, capsys):
    args = ["--data-dir", str(data_dir), "--model", "l42_mlp", "--optimizer", "adam", "--learning-rate", "0.01",
            "--epochs", "10", "--early-stopping", "--patience", "1", "--results", str(tmp_path / "r.json"),
            "--checkpoints", str(tmp_path / "ck")]
    written = []

    def write_and_stop(path, content):  # as if stopped (Ctrl-C, a kill, a full disk) while writing the results
        written.append(content)
        raise KeyboardInterrupt

    monkeypatch.setattr(main, "write_json", write_and_stop)
    with pytest.raises(KeyboardInterrupt):
        main.main(args)
    [expected] = written[0]["models"]
    assert expected["epochs_run"] < 10  # stopped early: a resumed run that trained on would differ
    monkeypatch.setattr(main, "write_json", train.write_json)
    capsys.readouterr()
    main.main(args)
    out = capsys.readouterr().out
    assert f"Resuming after epoch {expected['epochs_run']} from " in out and "where training had ended" in out
    assert "Epoch " not in out  # Keras trained no epoch
    [resumed] = json.loads((tmp_path / "r.json").read_text())["models"]
    for result in (expected, resumed):
        result.pop("train_seconds")
    assert resumed == expected
    assert list((tmp_path / "ck").iterdir()) == []  # all written: the next run starts afresh


def test_a_damaged_checkpoint_stops_the_run_until_fresh_starts_over(data_dir, tmp_path, monkeypatch):
    folder = tmp_path / "ck" / "l42_mlp"
    monkeypatch.setattr(main, "checkpoint_folder", lambda *args: folder)
    folder.mkdir(parents=True)
    cut_short = '{"state": "epoch-0003", "hist'
    (folder / "latest.json").write_text(cut_short)
    args = ["--data-dir", str(data_dir), "--model", "l42_mlp", "--epochs", "1", "--results", str(tmp_path / "r.json"),
            "--checkpoints", str(tmp_path / "ck")]
    with pytest.raises(SystemExit) as exit:
        main.main(args)
    assert exit.value.code == (f"error: l42_mlp: the checkpoint in {folder} cannot be resumed: latest.json is not "
                               f"valid JSON; run with --fresh to start over")
    assert not (tmp_path / "r.json").exists() and (folder / "latest.json").read_text() == cut_short
    main.main(args + ["--fresh"])
    assert json.loads((tmp_path / "r.json").read_text())["models"][0]["epochs_run"] == 1
    assert not folder.exists()


def test_a_checkpoint_folder_in_use_by_another_run_is_left_alone(data_dir, tmp_path, monkeypatch):
    folder = tmp_path / "ck" / "l42_mlp"
    monkeypatch.setattr(main, "checkpoint_folder", lambda *args: folder)
    with train.hold_checkpoint(folder):  # as the other run does; flock keeps out a second holder in this process too
        (folder / "latest.json").write_text("the other run's")
        with pytest.raises(SystemExit) as exit:
            main.main(["--data-dir", str(data_dir), "--model", "l42_mlp", "--fresh",
                       "--results", str(tmp_path / "r.json"), "--checkpoints", str(tmp_path / "ck")])
        assert exit.value.code == (f"error: l42_mlp: {folder} is in use by another run (pid {os.getpid()}): "
                                   f"wait for it to end, or stop it")
        assert (folder / "latest.json").read_text() == "the other run's"  # not cleared by --fresh
        assert not (tmp_path / "r.json").exists()


def test_same_seed_same_result(data_dir, tmp_path):
    runs = []
    for _ in range(2):
        main.main(["--data-dir", str(data_dir), "--model", "spark_baseline", "--epochs", "1",
                   "--results", str(tmp_path / "r.json"), "--checkpoints", str(tmp_path / "ck")])
        runs.append(json.loads((tmp_path / "r.json").read_text())["models"][0])
    assert runs[0]["test_loss"] == runs[1]["test_loss"]


@pytest.mark.skipif(not (SHARED_DATA / "MANIFEST.md").exists(), reason=f"no real data in {SHARED_DATA}")
def test_end_to_end_on_real_data(tmp_path):
    """The real command, on a few hundred real images for one epoch, two models."""
    results = tmp_path / "results.json"
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}  # as a user runs it
    run = subprocess.run([sys.executable, "main.py", "--dataset", "notmnist", "--model", "spark_finetuned", "l42_mlp",
                          "--epochs", "1", "--limit", "400", "--results", str(results),
                          "--checkpoints", str(tmp_path / "ck")],
                         cwd=ROOT, env={**env, "DATA_DIR": str(SHARED_DATA)}, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(results.read_text())
    assert report["dataset"] == "notmnist"
    assert [result["name"] for result in report["models"]] == ["spark_finetuned", "l42_mlp"]
    for result in report["models"]:
        assert RESULT_KEYS <= set(result)
        assert result["epochs_run"] == 1 and 0.1 < result["test_accuracy"] <= 1  # learnt something
    assert "Test accuracy on notmnist (" in run.stdout
    # Quiet: no log line from TensorFlow's C++ code (or absl's), whatever the device.
    assert not re.findall(r"^(?:[EWI]\d{4} |WARNING: All log messages).*", run.stderr, re.MULTILINE), run.stderr
    # The data loss is shown only where a weight penalty (spark_finetuned's L2) makes it differ from the
    # loss: on spark_finetuned's one epoch line, not on l42_mlp's.
    assert run.stdout.count("- data_loss:") == 1
