"""Search a model's hyperparameters on the validation split with KerasTuner; then test the best once.

    python -m experiments tune --dataset notmnist --model l42_mlp --trials 30
    python -m experiments tune --dataset notmnist --model l42_mlp --trials 30 --workers 2
    python -m experiments tune --dataset fashion --model fast_cnn --trials 8 --search bayesian

What is searched: the model's space in model.SEARCH_SPACES, declared next to the model.
How: KerasTuner (keras-tuner) proposes each trial (--search random, bayesian or hyperband);
the trial trains with this project's own core (train.train: the same build, compile, fit and
batch-norm statistics as main.py) and reports its validation accuracy, the objective.

Protocol: no trial reads the test split. When the search ends, the best trial's configuration
is trained again from scratch by train_and_evaluate (main.py's code path, the same seed, so the
same model as its trial) and scored once on the test split, beside the model's hand-set
settings (model.TRAINING) trained and scored the same way. Everything uses seed 0: one
validation split, the same for every trial.

Distributed (--workers N): KerasTuner's own mode. This process is the chief: it holds the
search (the oracle) and serves it over gRPC; N worker processes ask it for trials and report
back. Workers on other machines join the same search with KerasTuner's variables:
    KERASTUNER_TUNER_ID=worker-b KERASTUNER_ORACLE_IP=CHIEF_ADDRESS KERASTUNER_ORACLE_PORT=8000 \\
        python -m experiments tune --dataset notmnist --model l42_mlp
(the chief listening with --host 0.0.0.0). A local worker that dies is started again with its
ID, and KerasTuner's oracle gives it back the trial it was running; after RESTARTS deaths its
trial is recorded as failed and the search goes on without it.

Resuming: the search lives in --dir (tuning/ by default), one folder per dataset, model and
search. The same command run again carries on from there (KerasTuner's overwrite=False): the
finished trials stay, an interrupted one runs again, and a finished search only trains and
tests the best configuration again. --fresh starts the search over.
"""
import argparse
import os
import shlex
import socket
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import keras
import keras_tuner

from data import CLASS_NAMES, DataError, load_dataset
from experiments.runner import RESULTS
from main import image_count, positive_int, unwritable
from model import SEARCH_SPACES, options
from train import (SettingError, TrainingError, describe_device, train, train_and_evaluate, training_for, write_json,
                   write_text)

SEARCHES = {"random": keras_tuner.oracles.RandomSearchOracle,
            "bayesian": keras_tuner.oracles.BayesianOptimizationOracle,
            "hyperband": keras_tuner.oracles.HyperbandOracle}
OBJECTIVE = keras_tuner.Objective("val_accuracy", direction="max")
SEED = 0
DEFAULT_PORT = 8000
CONNECT_SECONDS = 30  # how long a worker waits for its chief to answer
POLL_SECONDS = 0.5  # how often the chief looks at its workers
RESTARTS = 2  # a local worker that dies is started again at most this many times


class Search(keras_tuner.Tuner):
    """KerasTuner's Tuner, whose trial trains with this project's core (train.train) instead of
    model.fit, and is scored on the validation split only."""

    def __init__(self, oracle, model, dataset, **kwargs):
        super().__init__(oracle, **kwargs)
        self.model_name, self.dataset = model, dataset

    def run_trial(self, trial):
        builder_options, settings = configuration(self.model_name, trial.hyperparameters)
        start = time.perf_counter()
        network, training = train(self.model_name, self.dataset, settings, SEED, builder_options, verbose=0)
        val = network.evaluate(self.dataset.x_val, self.dataset.y_val, verbose=0, return_dict=True)
        seconds = time.perf_counter() - start
        print(f"trial {trial.trial_id} ({self.tuner_id}): validation {val['accuracy']:.2%}, "
              f"{training['epochs_run']} epochs, {seconds:.0f} s", flush=True)
        return {"val_accuracy": val["accuracy"], "epochs": training["epochs_run"], "seconds": seconds}


def configuration(model, hp):
    """The builder's options and the train.Training settings at one point of the model's space."""
    builder_options, training = SEARCH_SPACES[model](hp)
    if "tuner/epochs" in hp.values:  # Hyperband gives each trial its epochs
        training = {**training, "epochs": hp.values["tuner/epochs"]}
    return builder_options, training_for(model).replace(**training)


def space_problem(model):
    """Why the model's search space cannot be searched, or None (checked before anything starts)."""
    if model not in SEARCH_SPACES:
        return f"{model} has no search space (model.SEARCH_SPACES has {', '.join(SEARCH_SPACES)})"
    hp = keras_tuner.HyperParameters()
    try:
        builder_options, _ = configuration(model, hp)  # the settings are checked as they are made
    except (SettingError, ValueError, TypeError) as error:
        return f"the search space of {model} is invalid: {error}"
    if not hp.space:
        return f"the search space of {model} is empty: it declares no hyperparameter"
    unknown = sorted(set(builder_options) - options(model))
    if unknown:
        return f"the search space of {model} sets {', '.join(unknown)}, which {model} has no option for"
    return None


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m experiments tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(CLASS_NAMES), default="notmnist")
    parser.add_argument("--model", default="l42_mlp", help=f"one of {', '.join(SEARCH_SPACES)} (default: l42_mlp)")
    parser.add_argument("--search", choices=SEARCHES, default="random", help="KerasTuner's oracle (default: random)")
    parser.add_argument("--trials", type=positive_int, default=30,
                        help="trials at most (default 30; hyperband: its epochs budget decides)")
    parser.add_argument("--workers", type=positive_int, help="worker processes on this machine, with this "
                        "process as their chief (default: none, the trials run here one after another)")
    parser.add_argument("--host", default="127.0.0.1", help="where the chief listens (0.0.0.0: for workers on "
                        "other machines too; default: %(default)s)")
    parser.add_argument("--port", type=positive_int, default=DEFAULT_PORT, help="the chief's port (default: %(default)s)")
    parser.add_argument("--dir", type=Path, default=Path("tuning"), help="where the search is kept (default: tuning/)")
    parser.add_argument("--fresh", action="store_true", help="start the search over instead of carrying it on")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for tune-DATASET-MODEL.json, .md and "
                        ".png (default: results/)")
    parser.add_argument("--data-dir", help="folder with the dataset files (default: $DATA_DIR, ...)")
    parser.add_argument("--limit", type=image_count, help="only the first N training and N test images (quick checks)")
    args = parser.parse_args(argv)
    problem = space_problem(args.model)
    if problem:
        parser.error(f"argument --model: {problem}")
    if args.search == "hyperband" and "--trials" in argv:
        parser.error("argument --trials: hyperband sets the number of trials itself, from the model's epochs")
    for flag, path in [("--dir", args.dir), ("--out", args.out)]:
        problem = unwritable(path, folder=True)
        if problem:
            parser.error(f"argument {flag}: {problem}")
    return args


def project(args):
    """The search's folder name under --dir: one per dataset, model and search."""
    return f"{args.dataset}-{args.model}-{args.search}" + (f"-limit{args.limit}" if args.limit else "")


def searched_data(args):
    """The dataset every trial trains on (the chief's and each worker's the same: seed SEED)."""
    try:
        return load_dataset(args.dataset, args.data_dir, seed=SEED, limit=args.limit)
    except DataError as error:
        sys.exit(f"error: {error}")


def make_search(args, dataset, overwrite=False):
    """The KerasTuner search, carried on from --dir where it exists (unless overwrite)."""
    hp = keras_tuner.HyperParameters()
    SEARCH_SPACES[args.model](hp)  # declared up front, so that the first trial is drawn from it too
    common = dict(objective=OBJECTIVE, seed=SEED, hyperparameters=hp)
    if args.search == "hyperband":
        oracle = SEARCHES["hyperband"](max_epochs=training_for(args.model).epochs, **common)
    else:
        oracle = SEARCHES[args.search](max_trials=args.trials, **common)
    oracle.verbose = 0  # Search.run_trial prints a line per trial instead
    return Search(oracle, args.model, dataset, directory=str(args.dir), project_name=project(args),
                  overwrite=overwrite)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    worker = os.environ.get("KERASTUNER_TUNER_ID")
    if worker and worker != "chief":
        return work(args, worker)
    if args.workers:
        problem = port_in_use(args.host, args.port)
        if problem:
            sys.exit(f"error: {problem}")
    print(f"Searching {args.model} on {args.dataset} ({args.search}, on {describe_device()}); "
          f"kept in {args.dir / project(args)}")
    dataset = searched_data(args)
    start = time.perf_counter()
    search = make_search(args, dataset, overwrite=args.fresh)
    try:
        if args.workers:
            serve(search, args, argv)
        else:
            search.search()
        report(search, args, argv, dataset, time.perf_counter() - start)
    except TrainingError as error:
        sys.exit(f"error: {error}")


# --- Distributed: the chief and its workers ----------------------------------------------

def port_in_use(host, port):
    """Why the chief cannot listen at host:port, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            return f"the chief cannot listen on {host}:{port} ({error.strerror}): choose another --port"
    return None


def serve(search, args, argv):
    """Serve the search to args.workers local worker processes (and any remote ones) until it is
    over, starting a dead worker again (RESTARTS times at most), then failing its trial."""
    import grpc
    from keras_tuner.src import protos
    # KerasTuner's own gRPC service for its oracle; its start_server would also do, but it checks
    # on the search every 20 s and cannot look after the workers.
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = OracleServicer(search.oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    search.save()  # the chief's state, which a second run of the command reloads
    names = [f"worker{i}" for i in range(args.workers)]
    workers = {name: start_worker(name, args, argv) for name in names}
    deaths = dict.fromkeys(names, 0)
    try:
        while not (servicer.stop_triggered and exit_chief(search.oracle)):
            time.sleep(POLL_SECONDS)
            for name, process in list(workers.items()):
                code = process.poll()
                if code in (None, 0):  # working, or done: the search sent it home
                    continue
                deaths[name] += 1
                if deaths[name] <= RESTARTS:
                    print(f"{name} stopped (exit status {code}): started again, to carry on with its trial")
                    workers[name] = start_worker(name, args, argv)
                else:
                    print(f"{name} stopped (exit status {code}) {deaths[name]} times: its trial is recorded as failed")
                    del workers[name]
                    give_up(search.oracle, name)
            if not workers and not servicer.stop_triggered:
                raise TrainingError(f"every worker stopped; the search so far is kept in {args.dir / project(args)}: "
                                    f"the same command carries on from there")
    finally:
        for process in workers.values():
            process.kill()
            process.wait()
        server.stop(grace=None)


def start_worker(name, args, argv):
    """A worker process running this same command, told by KerasTuner's variables whose it is."""
    env = dict(os.environ, KERASTUNER_TUNER_ID=name, KERASTUNER_ORACLE_PORT=str(args.port),
               KERASTUNER_ORACLE_IP="127.0.0.1" if args.host == "0.0.0.0" else args.host)
    return subprocess.Popen([sys.executable, "-m", "experiments", "tune", *argv], env=env)


def give_up(oracle, worker):
    """Record the trial a dead worker was running as failed, and forget the worker."""
    trial = oracle.ongoing_trials.get(worker)
    if trial is not None:
        trial.status = keras_tuner.engine.trial.TrialStatus.FAILED
        trial.message = f"{worker} died {RESTARTS + 1} times while running it"
        oracle.end_trial(trial)
    oracle.tuner_ids.discard(worker)


def work(args, name):
    """A worker: take trials from the chief until the search is over."""
    import grpc
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    try:
        grpc.channel_ready_future(grpc.insecure_channel(address)).result(timeout=CONNECT_SECONDS)
    except grpc.FutureTimeoutError:
        sys.exit(f"error: {name} cannot reach the chief at {address} (KERASTUNER_ORACLE_IP and "
                 f"KERASTUNER_ORACLE_PORT) within {CONNECT_SECONDS} s")
    make_search(args, searched_data(args)).search()


# --- The report ----------------------------------------------------------------------------

def trial_rows(oracle):
    """Every trial the search recorded, in the order they were started."""
    rows = []
    for trial_id in oracle.start_order:
        trial = oracle.trials[trial_id]
        metrics = {name: trial.metrics.get_last_value(name) for name in ("val_accuracy", "epochs", "seconds")}
        rows.append({"trial": trial_id, "status": trial.status, "hyperparameters": searched(trial), **metrics})
    return rows


def report(search, args, argv, dataset, seconds):
    """Train the best configuration and the hand-set one, test each once, and write the report."""
    rows = trial_rows(search.oracle)
    best_trial = search.oracle.get_best_trials(1)[0]
    builder_options, settings = configuration(args.model, best_trial.hyperparameters)
    print(f"\nBest of {len(rows)} trials: {best_trial.trial_id}, validation {best_trial.score:.2%}. "
          f"Training it again and testing it once, then the hand-set settings:")
    _, best = train_and_evaluate(args.model, dataset, settings, SEED, builder_options, verbose=0)
    _, default = train_and_evaluate(args.model, dataset, training_for(args.model), SEED, verbose=0)
    name = f"tune-{args.dataset}-{args.model}"
    result = {"command": "python -m experiments tune " + shlex.join(arg for arg in argv if arg != "--fresh"),
              "backend": keras.backend.backend(), "keras": keras.__version__, "keras_tuner": keras_tuner.__version__,
              "device": describe_device(), "date": time.strftime("%Y-%m-%d"), "dataset": args.dataset,
              "model": args.model, "search": args.search, "workers": args.workers or 0, "minutes": seconds / 60,
              "best_trial": best_trial.trial_id, "best_hyperparameters": searched(best_trial),
              "best": without_history(best), "default": without_history(default), "trials": rows}
    write_json(args.out / f"{name}.json", result)
    write_text(args.out / f"{name}.md", markdown(result))
    import plots  # matplotlib is only loaded for the picture
    plots.plot_search(args.out / f"{name}.png", rows, f"{args.model} on {args.dataset}: {args.search} search")
    print(markdown(result))
    print(f"Wrote {args.out / name}.json, .md and .png")


def searched(trial):
    """A trial's hyperparameters, without Hyperband's bookkeeping (tuner/epochs, ...)."""
    return {name: value for name, value in trial.hyperparameters.values.items() if not name.startswith("tuner/")}


def without_history(result):
    return {key: value for key, value in result.items() if key != "history"}


def shown(value):
    """A hyperparameter's value as the report prints it: a float with 3 significant digits."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def markdown(result):
    """The report: the best and the hand-set configuration tested, then every trial."""
    best, default = result["best"], result["default"]
    names = list(result["best_hyperparameters"])
    lines = [f"# Search: {result['model']} on {result['dataset']} ({result['search']}, KerasTuner "
             f"{result['keras_tuner']})", "",
             f"Command: `{result['command']}`  ",
             f"Backend: {result['backend']} (Keras {result['keras']}), device: {result['device']}, "
             f"date: {result['date']}; {len(result['trials'])} trials, {result['workers'] or 'no'} worker processes, "
             f"{result['minutes']:.1f} minutes in all.", "",
             "Every trial is scored on the validation split only; the test split is read once for each of the "
             "two models below, after the search.", "",
             "| configuration | validation | test | params | epochs | seconds |",
             "| --- | --- | --- | --- | --- | --- |",
             f"| best trial ({result['best_trial']}), trained again | {best['val_accuracy']:.2%} | "
             f"{best['test_accuracy']:.2%} | {best['params']:,} | {best['epochs_run']} | {best['train_seconds']:.0f} |",
             f"| hand-set (model.TRAINING) | {default['val_accuracy']:.2%} | {default['test_accuracy']:.2%} | "
             f"{default['params']:,} | {default['epochs_run']} | {default['train_seconds']:.0f} |", "",
             "Best: " + ", ".join(f"{key} {shown(value)}" for key, value in result["best_hyperparameters"].items()), "",
             "| trial | status | validation | epochs run | seconds | " + " | ".join(names) + " |",
             "| --- " * (5 + len(names)) + "|"]
    for row in result["trials"]:
        accuracy = "-" if row["val_accuracy"] is None else f"{row['val_accuracy']:.2%}"
        cells = [shown(row["hyperparameters"].get(key, "-")) for key in names]
        epochs = "-" if row["epochs"] is None else f"{row['epochs']:.0f}"
        taken = "-" if row["seconds"] is None else f"{row['seconds']:.0f}"
        lines.append(f"| {row['trial']} | {row['status']} | {accuracy} | {epochs} | {taken} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
