"""train.py: same seed same weights, resuming after a kill anywhere, and stopping on NaN."""
import dataclasses
import functools
import json
import os
import shutil
import signal
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

import data
import main
import train
from conftest import ROOT, make_idx_folder
from model import MODELS

TINY_RUN = ["--model", "tiny_finetuned", "--epochs", "4", "--batch-size", "16",
            "--early-stopping", "--patience", "2", "--seed", "3"]
BATCHES_PER_EPOCH = 6  # 90 training images in batches of 16

# Runs main.py on the tests' tiny files (trusting their hashes) and, given a kill point,
# arranges for the process to SIGKILL itself at that moment ("interrupt": to Ctrl-C itself,
# SIGINT, as the n-th batch begins, which a parent watching the output would send too late).
# The launcher gives the run Python's own Ctrl-C handler, as a terminal would: started from
# a background job (`cmd &` in a script), the tests inherit an ignored SIGINT, and the run
# would finish as if never interrupted. The signal is raised on the main thread, where the
# KeyboardInterrupt comes at once, not on the TensorFlow thread that draws the batches.
LAUNCHER = """
import json, os, signal, sys
sys.path.insert(0, {root!r})
import keras, data, model, train, main
data.IDX_SHA256["mnist"] = {hashes!r}

def tiny_finetuned(input_shape, num_classes):  # Spark's final model, one narrow network: every random source, fast
    return model.spark_finetuned(input_shape, num_classes, ensemble=1, conv_depth=8, hidden_size=16)
model.MODELS["tiny_finetuned"] = tiny_finetuned
model.TRAINING["tiny_finetuned"] = model.TRAINING["spark_finetuned"]
where, n, calls = {where!r}, {n}, [0]
signal.signal(signal.SIGINT, signal.default_int_handler)

def after_n_calls(function):
    def counted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            if where == "weights":  # half a weights file, as if killed while writing it
                with open(args[1], "wb") as file:
                    file.write(b"half a file")
            if where == "interrupt":
                signal.raise_signal(signal.SIGINT)  # on this thread, the main one: KeyboardInterrupt here
            os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)
    return counted

if where == "batch":  # the n-th batch drawn, counting from the first epoch
    train.ShuffledBatches.__getitem__ = after_n_calls(train.ShuffledBatches.__getitem__)
elif where == "interrupt":  # as the n-th batch begins, counting from the first epoch
    train.StopOnNaN.on_train_batch_begin = after_n_calls(lambda *args, **kwargs: None)
elif where == "weights":  # while writing the n-th epoch's weights
    keras.Model.save_weights = after_n_calls(keras.Model.save_weights)
elif where == "latest":  # weights of the n-th epoch written, latest.json not yet
    train.write_json = after_n_calls(train.write_json)
main.main(sys.argv[1:])
"""


def launch(args, hashes, kill=(None, 0)):
    code = LAUNCHER.format(root=str(ROOT), hashes=hashes, where=kill[0], n=kill[1])
    return [sys.executable, "-c", code, *args]


def run_main(args, hashes, kill=(None, 0)):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(launch(args, hashes, kill), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def comparable(results_file):
    """Everything in a results file that an interruption must not change (not the timings)."""
    report = json.loads(results_file.read_text())
    for model in report["models"]:
        model.pop("train_seconds")
    return report


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The tiny run, never stopped: what every interrupted run must end up with."""
    folder = tmp_path_factory.mktemp("reference")
    hashes = make_idx_folder(folder / "mnist")
    run = run_main(["--data-dir", str(folder), *TINY_RUN, "--checkpoints", str(folder / "ck"),
                    "--results", str(folder / "results.json")], hashes)
    assert run.returncode == 0, run.stderr[-3000:]
    return folder, hashes, comparable(folder / "results.json")


# A run stopped four times, each run carrying on from what the one before saved, then let finish:
# (where, n, the epochs saved once stopped there), n counting from each run's start.
KILLS = [
    ("batch", 3, 0),  # killed before the first epoch ends: nothing saved yet
    ("weights", 2, 1),  # while writing the second epoch's checkpoint
    ("interrupt", BATCHES_PER_EPOCH + 4, 2),  # resumed after epoch 1, Ctrl-C in the middle of epoch 3
    ("latest", 1, 2),  # resumed after epoch 2, epoch 3's weights written but the checkpoint not pointing to them
]


def test_killed_runs_resume_to_the_same_result(uninterrupted, tmp_path):
    data_dir, hashes, expected = uninterrupted
    args = ["--data-dir", str(data_dir), *TINY_RUN, "--checkpoints", str(tmp_path / "ck"),
            "--results", str(tmp_path / "results.json")]
    saved = 0
    for kill in KILLS:
        killed = run_main(args, hashes, kill[:2])
        if kill[0] == "interrupt":  # Ctrl-C: the run says how to carry on, with the usual status
            assert killed.returncode == 130, killed.stderr[-3000:]
            assert "Interrupted" in killed.stderr and "run the same command again" in killed.stderr
        else:
            assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert ("Resuming after epoch" in killed.stdout) == (saved > 0)
        assert saved == 0 or f"Resuming after epoch {saved} " in killed.stdout
        assert not (tmp_path / "results.json").exists()
        saved = kill[2]
    resumed = run_main(args, hashes)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming after epoch {saved} " in resumed.stdout
    assert comparable(tmp_path / "results.json") == expected  # identical, to the last bit
    assert list((tmp_path / "ck").iterdir()) == []  # finished: nothing left to resume


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory):
    """The checkpoint of a finished 2-epoch run with early stopping (so with best.npz), to copy and damage."""
    folder = tmp_path_factory.mktemp("saved")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "IDX_SHA256", {"mnist": make_idx_folder(folder / "mnist")})
        dataset = data.load_dataset("mnist", folder)
    settings = train.Training(batch_size=16, epochs=2, patience=2)
    train.train_and_evaluate("l42_mlp", dataset, settings, checkpoint_dir=folder / "ck", verbose=0)
    return folder / "ck"


def alter_a_weight(path):
    """Add 1 to the first layer's first weights: the file stays a valid HDF5 file that Keras loads."""
    with h5py.File(path, "r+") as weights:
        kernel = weights["layers"][next(iter(weights["layers"]))]["vars"]["0"]
        kernel[...] = kernel[...] + 1


def cut_in_half(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


@pytest.mark.parametrize("damage, why", [
    (lambda state: cut_in_half(state / "model.weights.h5"),
     "the files of epoch-0002 do not match their checksums in latest.json: model.weights.h5"),
    (lambda state: alter_a_weight(state / "model.weights.h5"),
     "the files of epoch-0002 do not match their checksums in latest.json: model.weights.h5"),
    (lambda state: (state / "best.npz").unlink(),
     "the files of epoch-0002 do not match their checksums in latest.json: best.npz"),
    (lambda state: shutil.rmtree(state), "epoch-0002, which latest.json names, is missing"),
    (lambda state: cut_in_half(state.parent / "latest.json"), "latest.json is not valid JSON"),
    (lambda state: (state.parent / "latest.json").write_text('{"state": "epoch-0002"}'),
     "latest.json was not written by this code"),
    (lambda state: (state.parent / "latest.json").write_text(
        '{"state": "../elsewhere", "sha256": [], "history": [], "seconds": 1, "seeds": []}'),
     "latest.json was not written by this code"),
    (lambda state: (state.parent / "latest.json").unlink(), "it has epoch-0002 but no latest.json"),
])
def test_a_damaged_partial_or_foreign_checkpoint_is_refused_naming_its_folder(saved_checkpoint, tmp_path, damage,
                                                                              why):
    folder = tmp_path / "ck"
    shutil.copytree(saved_checkpoint, folder)
    assert train.Checkpoint(folder).finished  # the copy as saved resumes
    damage(folder / "epoch-0002")
    with pytest.raises(train.CheckpointError) as error:
        train.Checkpoint(folder)
    assert str(error.value) == f"the checkpoint in {folder} cannot be resumed: {why}"


def test_the_first_epochs_half_saved_state_without_latest_json_starts_afresh(saved_checkpoint, tmp_path):
    folder = tmp_path / "ck"
    shutil.copytree(saved_checkpoint / "epoch-0002", folder / "epoch-0001")  # killed before latest.json was written
    assert train.Checkpoint(folder).initial_epoch == 0


def test_a_checkpoint_folder_is_held_by_one_run_at_a_time(tmp_path):
    folder = tmp_path / "ck"
    with train.hold_checkpoint(folder):
        with pytest.raises(train.TrainingError, match=rf"^{folder} is in use by another run \(pid {os.getpid()}\)"):
            with train.hold_checkpoint(folder):
                pass
        (folder / "latest.json").write_text("{}")
    assert (folder / "latest.json").exists()  # a saved state stays
    with train.hold_checkpoint(folder):  # let go of: the next run may have it
        train.clear_checkpoint(folder)
        assert [path.name for path in folder.iterdir()] == [train.LOCK_FILE]
    assert not folder.exists()  # nothing saved in it: nothing left behind


def tiny_dataset(data_dir):
    return data.load_dataset("mnist", data_dir)


def final_weights(dataset, seed, **speed_options):
    settings = train.Training(optimizer="adam", learning_rate=0.001, batch_size=16, epochs=2, **speed_options)
    model, _ = train.train_and_evaluate("spark_finetuned", dataset, settings, seed,
                                        {"ensemble": 1}, verbose=0)
    return model.get_weights()


def test_same_seed_same_weights_other_seed_other_weights(data_dir):
    dataset = tiny_dataset(data_dir)  # dropout, batch norm and shifts: every random source
    first, again, other = (final_weights(dataset, seed) for seed in (0, 0, 1))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_steps_per_execution_changes_how_steps_are_called_not_what_they_compute(data_dir):
    dataset = tiny_dataset(data_dir)  # 6 batches an epoch: the second call of 4 steps runs out early
    one, four = (final_weights(dataset, 0, steps_per_execution=n) for n in (1, 4))
    assert all(np.array_equal(a, b) for a, b in zip(one, four))


@pytest.mark.parametrize("backend, kind, expected", [("tensorflow", "cpu", 1), ("jax", "cpu", 1), ("jax", "gpu", 16),
                                                     ("tensorflow", "gpu", 16), ("torch", "gpu", 1)])
def test_several_steps_per_call_by_default_on_a_gpu_only_and_never_on_pytorch(monkeypatch, backend, kind, expected):
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    monkeypatch.setattr(train, "compute_device", lambda: (kind, "some device"))
    assert train.default_steps_per_execution() == expected


def test_a_written_file_appears_whole_and_readable_by_all_or_not_at_all(tmp_path):
    train.write_text(tmp_path / "report.md", "# done\n")
    assert (tmp_path / "report.md").read_text() == "# done\n"
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o644
    with pytest.raises(KeyboardInterrupt):
        with data.atomic_file(tmp_path / "report.md", "w") as file:
            file.write("# half")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"] and (tmp_path / "report.md").read_text() == "# done\n"


def test_mixed_precision_computes_in_bfloat16_and_keeps_float32_weights(data_dir):
    dataset = tiny_dataset(data_dir)
    settings = train.Training(batch_size=16, epochs=1, precision="mixed_bfloat16")
    model, result = train.train_and_evaluate("spark_baseline", dataset, settings, verbose=0)
    assert {layer.compute_dtype for layer in model.layers} == {"bfloat16"}
    assert {weight.dtype for weight in model.weights} == {"float32"}
    assert np.isfinite(result["test_loss"]) and result["history"]["loss"][0] > 0
    assert keras.config.dtype_policy().name == "float32"  # the next model is built in float32 again
    with pytest.raises(ValueError):  # even when building fails
        train.build_model("spark_baseline", dataset, "mixed_bfloat16", {"no_such_option": 1})
    assert keras.config.dtype_policy().name == "float32"


def test_nan_is_caught_with_several_steps_per_call(data_dir):
    settings = train.Training(optimizer="sgd", learning_rate=1e12, batch_size=16, epochs=2, steps_per_execution=4)
    with pytest.raises(train.TrainingError, match="The loss became nan at epoch 1, by batch [0-9]+"):
        train.train_and_evaluate("spark_baseline", tiny_dataset(data_dir), settings, verbose=0)


def test_learning_rate_scaling_rules():
    assert train.scaled_learning_rate(0.01, "sgd", 512, 128) == pytest.approx(0.04)  # linear
    assert train.scaled_learning_rate(0.001, "adam", 512, 128) == pytest.approx(0.002)  # square root
    assert train.scaled_learning_rate(0.001, "rmsprop", 32, 128) == pytest.approx(0.0005)


def test_shuffled_batches_depend_on_seed_and_epoch_only():
    x, y = np.arange(10).reshape(10, 1), np.arange(10)
    batches = train.ShuffledBatches(x, y, 4, seed=1)
    assert len(batches) == 3 and [len(batches[i][0]) for i in range(3)] == [4, 4, 2]
    epoch_0 = np.concatenate([batches[i][1] for i in range(3)])
    assert sorted(epoch_0) == list(range(10))
    batches.shuffle(5)
    epoch_5 = np.concatenate([batches[i][1] for i in range(3)])
    fresh = train.ShuffledBatches(x, y, 4, seed=1)
    fresh.shuffle(5)
    assert np.array_equal(epoch_5, np.concatenate([fresh[i][1] for i in range(3)]))
    assert not np.array_equal(epoch_0, epoch_5)


def test_fit_cuts_every_batch_in_its_own_epochs_order(data_dir, monkeypatch):
    drawn = []  # (the epoch whose order was in place, batch index), as fit cut each batch
    shuffle, cut = train.ShuffledBatches.shuffle, train.ShuffledBatches.__getitem__

    def shuffle_and_note(self, epoch):
        self.epoch = epoch
        shuffle(self, epoch)

    def cut_and_note(self, index):
        drawn.append((self.epoch, index))
        return cut(self, index)

    monkeypatch.setattr(train.ShuffledBatches, "shuffle", shuffle_and_note)
    monkeypatch.setattr(train.ShuffledBatches, "__getitem__", cut_and_note)
    settings = train.Training(batch_size=16, epochs=3)
    train.train_and_evaluate("l42_mlp", tiny_dataset(data_dir), settings, verbose=0)
    # Every batch of every epoch was cut in that epoch's order, and none in an earlier one. (Keras
    # may cut a batch twice: JAX's trainer reads the first one to build the model.)
    assert set(drawn) == {(epoch, index) for epoch in range(3) for index in range(BATCHES_PER_EPOCH)}
    assert [epoch for epoch, _ in drawn] == sorted(epoch for epoch, _ in drawn)


def test_nan_loss_stops_with_epoch_and_batch(data_dir, tmp_path):
    with pytest.raises(SystemExit) as stop:
        main.main(["--data-dir", str(data_dir), "--model", "spark_baseline", "--optimizer", "sgd",
                   "--learning-rate", "1e12", "--batch-size", "16", "--epochs", "3",
                   "--checkpoints", str(tmp_path / "ck"), "--results", str(tmp_path / "r.json")])
    assert stop.value.code.startswith("error: spark_baseline: The loss became nan at epoch 1, by batch ")
    assert "Try a smaller learning rate" in stop.value.code and not (tmp_path / "r.json").exists()


def test_smoothed_crossentropy_matches_keras_on_one_hot_labels():
    y_pred = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="float32")
    ours = train.SmoothedCrossentropy(0.1)(np.array([0, 1]), y_pred)
    keras_own = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(3)[[0, 1]], y_pred)
    assert np.isclose(float(ours), float(keras_own))
    plain = keras.losses.SparseCategoricalCrossentropy()(np.array([0, 1]), y_pred)
    assert not np.isclose(float(ours), float(plain))


def test_one_cycle_warms_up_to_the_peak_then_anneals_to_zero():
    optimizer = train.make_optimizer(train.Training(learning_rate=0.01, one_cycle=True), steps=100)
    schedule = optimizer._learning_rate  # the schedule itself: .learning_rate is its current value
    rate = [float(schedule(step)) for step in (0, 10, 20, 60, 100)]
    assert np.allclose(rate[0], 0.001) and 0.001 < rate[1] < 0.01 and np.isclose(rate[2], 0.01)
    assert 0 < rate[3] < 0.01 and rate[4] < 1e-6
    constant = train.make_optimizer(train.Training(learning_rate=0.01), steps=100)
    assert np.isclose(float(constant.learning_rate), 0.01)


@pytest.mark.parametrize("settings, named", [
    (dict(patiance=3), "unknown training setting patiance"),
    (dict(batch_size=0), "training setting batch_size: must be a positive integer, got 0"),
    (dict(epochs=2.5), "training setting epochs: must be a positive integer"),
    (dict(optimizer="lbfgs"), "training setting optimizer: must be one of sgd, adam"),
    (dict(learning_rate=-0.1), "training setting learning_rate: must be a positive number"),
    (dict(loss="no_such_loss"), "training setting loss: must be a Keras loss name"),
    (dict(label_smoothing=1.5), "training setting label_smoothing: must be at least 0 and below 1"),
    (dict(precision="float64"), "training setting precision: must be one of float32"),
    (dict(callbacks=[3]), "training setting callbacks: must be a list of functions"),
    (dict(batch_norm_statistics="exact"), "training setting batch_norm_statistics: must be one of recomputed, moving"),
])
def test_a_mistyped_setting_or_an_impossible_value_is_refused_by_name(settings, named):
    with pytest.raises(train.SettingError, match=named):
        train.Training().replace(**settings)


def test_every_registered_model_has_valid_settings():
    for name in MODELS:
        assert isinstance(train.training_for(name), train.Training)


def test_the_checkpoint_folder_changes_with_the_code_the_data_and_the_settings(tmp_path, monkeypatch):
    """A run resumes only a checkpoint made by the same code on the same data with the same settings."""
    copies = []
    for source in train.SOURCES:  # edit copies, not the files other tests are reading
        copies.append(tmp_path / source.name)
        copies[-1].write_bytes(source.read_bytes())
    monkeypatch.setattr(train, "SOURCES", copies)
    dataset = data.Dataset("mnist", *[np.zeros((4, 28, 28, 1), "float32"), np.arange(4)] * 3,
                           class_names=list("0123456789"), source="made up")
    settings = train.training_for("fast_cnn")
    folder = lambda: train.checkpoint_folder("ck", "fast_cnn", dataset, settings, {"augment": True}, seed=1)
    first = folder()
    assert first == folder() and first.parent.name == "ck" and first.name.startswith("mnist-fast_cnn-seed1-")

    model_py, train_py = (tmp_path / "model.py"), (tmp_path / "train.py")
    original_model, original_train = model_py.read_text(), train_py.read_text()
    model_py.write_text(original_model.replace("dy, dx = (ops.round(", "dy, dx = (ops.floor("))  # edit RandomShift
    assert "class RandomShift" in original_model and folder() != first
    model_py.write_text(original_model)
    train_py.write_text(original_train + "\n# an edit\n")
    assert folder() != first
    train_py.write_text(original_train)
    assert folder() == first

    assert train.checkpoint_folder("ck", "fast_cnn", dataset, settings.replace(epochs=7), {"augment": True}, 1) != first
    assert train.checkpoint_folder("ck", "fast_cnn", dataset, settings, {"augment": False}, 1) != first
    assert train.checkpoint_folder("ck", "fast_cnn", dataset, settings, {"augment": True}, 2) != first
    changed = dataclasses.replace(dataset, x_test=dataset.x_test + 1)  # the data itself, not just its size
    assert train.checkpoint_folder("ck", "fast_cnn", changed, settings, {"augment": True}, 1) != first


def test_settings_that_hold_functions_have_one_checkpoint_folder_per_value():
    dataset = data.Dataset("mnist", *[np.zeros((2, 28, 28, 1), "float32"), np.arange(2)] * 3,
                           class_names=list("0123456789"), source="made up")

    def decay_by(factor):
        def schedule():
            return keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate * factor)
        return schedule

    def folder(optimizer, factor):
        settings = train.Training(optimizer=optimizer, callbacks=[decay_by(factor)])
        return train.checkpoint_folder("ck", "l42_mlp", dataset, settings)

    sgd = functools.partial(keras.optimizers.SGD, learning_rate=0.1)
    assert folder(sgd, 0.5) == folder(functools.partial(keras.optimizers.SGD, learning_rate=0.1), 0.5)
    assert folder(sgd, 0.5) != folder(functools.partial(keras.optimizers.SGD, learning_rate=0.2), 0.5)
    assert folder(sgd, 0.5) != folder(sgd, 0.9)  # the closure's value counts, not only the function's name


def test_the_data_loss_is_tracked_only_when_a_weight_penalty_makes_it_differ(data_dir):
    dataset = tiny_dataset(data_dir)
    settings = train.Training(batch_size=16, epochs=2, patience=1)
    _, plain = train.train_and_evaluate("l42_mlp", dataset, settings, verbose=0)
    _, penalised = train.train_and_evaluate("spark_finetuned", dataset, settings, hyperparameters={"ensemble": 1},
                                            verbose=0)
    assert "data_loss" not in plain["history"] and "val_loss" in plain["history"]
    history = penalised["history"]
    assert all(loss > data_loss for loss, data_loss in zip(history["loss"], history["data_loss"]))
