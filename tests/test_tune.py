"""experiments/tune.py: the search spaces, bad input, resuming, and a distributed search that loses a worker."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner
import pytest

import model
from conftest import ROOT, SHARED_DATA, needs_data
from experiments import tune


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("name", sorted(model.SEARCH_SPACES))
def test_every_search_space_sets_options_and_settings_its_model_has(name):
    assert tune.space_problem(name) is None
    hp = keras_tuner.HyperParameters()
    builder_options, settings = tune.configuration(name, hp)
    assert hp.space and set(builder_options) <= model.options(name)
    assert settings.epochs >= 1  # a train.Training: any bad value would have raised


@pytest.mark.parametrize("search", sorted(tune.SEARCHES))
def test_every_search_can_be_made(search, tmp_path):
    """Each oracle starts (Bayesian optimisation needs scikit-learn, which requirements.txt installs)."""
    args = tune.parse_args(["--search", search, "--dir", str(tmp_path / "dir"), "--out", str(tmp_path)])
    made = tune.make_search(args, dataset=None)
    assert isinstance(made.oracle, tune.SEARCHES[search]) and made.oracle.hyperparameters.space


@pytest.mark.parametrize("flags, complaint", [
    (["--workers", "0"], "argument --workers: must be a positive integer, got 0"),
    (["--model", "spark_baseline"], "argument --model: spark_baseline has no search space"),
    (["--search", "grid"], "argument --search: invalid choice: 'grid'"),
    (["--search", "hyperband", "--trials", "5"], "argument --trials: hyperband sets the number of trials itself"),
    (["--out", "/no/such/folder/at/all"], "argument --out: cannot write in /"),
])
def test_bad_flags_are_named(flags, complaint, capsys, monkeypatch):
    monkeypatch.setattr(os, "access", lambda place, mode: Path(place) != Path("/"))  # as a user, not root
    with pytest.raises(SystemExit) as exit:
        tune.main(flags)
    assert exit.value.code == 2 and complaint in capsys.readouterr().err


@pytest.mark.parametrize("space, complaint", [
    (lambda hp: ({}, {}), "the search space of l42_mlp is empty"),
    (lambda hp: ({"depth": hp.Int("depth", 1, 3)}, {}), "sets depth, which l42_mlp has no option for"),
    (lambda hp: ({}, {"optimizer": hp.Choice("optimizer", ["lbfgs"])}), "the search space of l42_mlp is invalid"),
])
def test_an_empty_or_invalid_search_space_is_refused_before_anything_starts(space, complaint, monkeypatch, capsys,
                                                                            tmp_path):
    monkeypatch.setitem(model.SEARCH_SPACES, "l42_mlp", space)
    with pytest.raises(SystemExit) as exit:
        tune.main(["--model", "l42_mlp", "--dir", str(tmp_path / "dir"), "--out", str(tmp_path)])
    assert exit.value.code == 2 and complaint in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_data_that_cannot_be_read_stops_the_search_before_it_starts(tmp_path):
    with pytest.raises(SystemExit) as exit:
        tune.main(["--data-dir", str(tmp_path / "no-data"), "--dir", str(tmp_path / "dir"), "--out", str(tmp_path)])
    assert str(exit.value.code).startswith(f"error: The data directory {tmp_path / 'no-data'} does not exist")
    assert list(tmp_path.iterdir()) == []


def test_a_port_in_use_stops_the_chief_before_it_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit:
            tune.main(["--workers", "1", "--port", str(port), "--dir", str(tmp_path / "dir"), "--out", str(tmp_path)])
    assert f"error: the chief cannot listen on 127.0.0.1:{port}" in str(exit.value.code)
    assert list(tmp_path.iterdir()) == []


def test_a_worker_that_cannot_reach_its_chief_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "CONNECT_SECONDS", 1)
    for name, value in [("KERASTUNER_TUNER_ID", "worker7"), ("KERASTUNER_ORACLE_IP", "127.0.0.1"),
                        ("KERASTUNER_ORACLE_PORT", str(free_port()))]:
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit:
        tune.main(["--dir", str(tmp_path / "dir"), "--out", str(tmp_path)])
    assert "error: worker7 cannot reach the chief at 127.0.0.1:" in str(exit.value.code)
    assert list(tmp_path.iterdir()) == []


def test_a_search_carries_on_where_it_stopped_and_tests_the_best_once(data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(model.TRAINING, "l42_mlp", dict(model.TRAINING["l42_mlp"], epochs=2))  # a quick search
    common = ["--dataset", "mnist", "--data-dir", str(data_dir), "--dir", str(tmp_path / "dir"), "--out", str(tmp_path)]
    tune.main([*common, "--trials", "1"])
    first = json.loads((tmp_path / "tune-mnist-l42_mlp.json").read_text())
    tune.main([*common, "--trials", "2"])  # the same search, one trial further
    report = json.loads((tmp_path / "tune-mnist-l42_mlp.json").read_text())
    assert [row["trial"] for row in report["trials"]] == ["0", "1"]
    assert report["trials"][:1] == first["trials"]  # kept, not run again
    scores = {row["trial"]: row["val_accuracy"] for row in report["trials"]}
    assert scores[report["best_trial"]] == max(scores.values())
    # the best configuration trained again by main.py's code path: the same model as its trial
    assert report["best"]["val_accuracy"] == pytest.approx(scores[report["best_trial"]], abs=1e-6)
    assert {"test_accuracy", "val_accuracy", "params"} <= set(report["default"])
    assert (tmp_path / "tune-mnist-l42_mlp.png").stat().st_size > 0
    assert "| best trial" in (tmp_path / "tune-mnist-l42_mlp.md").read_text()


def worker_processes(parent):
    """{KERASTUNER_TUNER_ID: pid} of the child processes of `parent` (Linux's /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                variables = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
                found[variables.get("KERASTUNER_TUNER_ID")] = int(entry.name)
        except (OSError, ValueError, IndexError):  # a process that ended meanwhile
            continue
    return found


@needs_data
def test_a_distributed_search_survives_a_worker_killed_mid_trial(tmp_path):
    search = tmp_path / "dir" / "mnist-l42_mlp-random-limit300"
    chief = subprocess.Popen(
        [sys.executable, "-m", "experiments", "tune", "--dataset", "mnist", "--limit", "300", "--trials", "2",
         "--workers", "2", "--port", str(free_port()), "--data-dir", str(SHARED_DATA), "--dir", str(tmp_path / "dir"),
         "--out", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed, deadline = None, time.time() + 60
    while killed is None and chief.poll() is None and time.time() < deadline:
        time.sleep(0.1)
        try:
            ongoing = json.loads((search / "oracle.json").read_text())["ongoing_trials"]
        except (OSError, ValueError, KeyError):
            continue
        workers = worker_processes(chief.pid)
        for worker in ongoing:
            if worker in workers:
                os.kill(workers[worker], signal.SIGKILL)
                killed = worker
                break
    out, _ = chief.communicate(timeout=120)
    assert chief.returncode == 0, out
    assert killed and f"{killed} stopped (exit status -9): started again" in out
    report = json.loads((tmp_path / "tune-mnist-l42_mlp.json").read_text())
    assert report["workers"] == 2
    assert [row["trial"] for row in report["trials"]] == ["0", "1"]  # every trial, once
    assert all(row["status"] == "COMPLETED" for row in report["trials"])
    scores = {row["trial"]: row["val_accuracy"] for row in report["trials"]}
    assert scores[report["best_trial"]] == max(scores.values())
    assert report["best"]["val_accuracy"] == pytest.approx(scores[report["best_trial"]], abs=1e-6)
