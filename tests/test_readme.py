"""The numbers in README.md and docs/speed.md are read back from the files in results/.

The documents follow a convention that lets this test find where each number comes from:
- a table row that shows a measured number (an accuracy, seconds, epochs, a speed-up) names
  the JSON file it comes from: a link, or `--results results/x.json` in its command;
- it names the result inside that file in backticks, as the file spells it: a model
  (`spark_baseline`), an experiment's step (`baseline CNN`), a row of the speed benchmark
  (`spark_finetuned + augmentation`) or a command (`... --seed S`: S stands for every seed,
  and the row shows their mean ± std). A file that holds a single result needs no name;
- the column's header says which field the number shows (see COLUMNS);
- a number matches its field to the rounding shown: 99.24% matches 0.99238.
Columns and rows headed "published" quote the tutorials, not our runs: they are not checked.
The printout of `python main.py` in the README is checked the same way, as a table.
"""
import json
import re
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md", "docs/speed.md", "docs/spark-gap.md"]
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")  # 99.24, 1,317, +17,624, -4
JSON_FILE = re.compile(r"results/[\w./-]+\.json")

# The field a column shows, by the first of these patterns its header matches.
COLUMNS = [
    (r"/ by hand", "ratio"),
    (r"per step, by hand", "ms_per_step_by_hand"),
    (r"per step, `affine_transform`", "ms_per_step_affine_transform"),
    (r"per epoch", "seconds_per_epoch"),
    (r"plain", "reference_ms_per_step"),
    (r"without it", "ms_per_step_without"),
    (r"with it", "ms_per_step_with"),
    (r"ms per step", "ms_per_step"),
    (r"\bratio\b", "ratio_to_reference"),
    (r"\bshare\b", "share"),
    (r"speed-up", "speed_up"),
    (r"epochs", "epochs_run"),  # "18 (13)": epochs run, and the best epoch in brackets
    (r"seconds", "seconds"),
    (r"\btrain\b", "train_accuracy"),
    (r"\bval\b", "val_accuracy"),
    (r"\btest\b", "test_accuracy"),
]
# Columns that show a number too: a time to accuracy, the length of an experiment, a training loss.
MEASURED = [pattern for pattern, _ in COLUMNS] + [r"time to [\d.]+%", r"^steps run$", r"^epoch \d+$"]


def records(data):
    """(name, result) for every result in a results file, with accuracies in percent."""
    def main_py(model):  # one model's results, as `python main.py --results FILE` writes them
        accuracies = {key: 100 * model[key] for key in ("train_accuracy", "val_accuracy", "test_accuracy")}
        return {**model, **accuracies, "seconds": model["train_seconds"]}

    for model in data.get("models", []):
        yield model["name"], main_py(model)
    for run in data.get("runs", []):
        if "command" in run:  # several main.py runs, each with its command
            yield run["command"], main_py(run["results"]["models"][0])
    for step in data.get("steps", []):  # python -m experiments NAME
        on_validation = step.get("measured_on") == "validation"
        yield step["step"], {"test_accuracy": step.get("test", step["measured"]), "std": step["std"],
                             "val_accuracy": step["measured"] if on_validation else None,
                             "seconds": step["seconds"], "epochs_run": step["epochs_run"]}
    for row in data.get("throughput", []) + data.get("speed_options", []):  # python -m experiments speed
        yield row.get("model") or row["option"], row
    for row in data.get("augmentation_cost", []):
        yield row["augmentation"], {**row, "share": 100 * row["share"]}
    for row in data.get("warps", []):
        yield f"{row['warp']} on {row['network']}", row


def named(data, names):
    """The results in `data` that `names` (backticked texts) name; "--seed S" names every seed."""
    def matches(name, text):
        return text in (name, re.sub(r"--seed \d+", "--seed S", name))
    every = list(records(data))
    found = [result for name, result in every if any(matches(name, text) for text in names)]
    return found or ([every[0][1]] if len(every) == 1 else [])  # a file's only result needs no name


def expected(data, header, names):
    """What a cell under `header` must show, from the results file `data`: the value (the mean, over
    several results) and, where the cell has one, the ± std or the best epoch. A string says why not."""
    if match := re.search(r"time to ([\d.]+)%", header):  # the speed benchmark's median over seeds
        times = [t["median_seconds"] for t in data["time_to_accuracy"] if t["target"] == float(match[1])]
        return times or f"has no time to {match[1]}%"
    if header == "steps run":  # an experiment's steps
        return [len(data["steps"])]
    results = named(data, names)
    if len(results) != 1 and not any("--seed S" in name for name in names):
        return f"has {len(results)} results that the row names in backticks, not 1"
    if epoch := re.fullmatch(r"epoch (\d+)", header):  # the training loss after that epoch
        values = [result["history"]["loss"][int(epoch[1]) - 1] for result in results]
    else:
        field = next((field for pattern, field in COLUMNS if re.search(pattern, header)), None)
        values = [result.get(field) for result in results]
        if None in values:
            return "has no field for this column in the result the row names"
    if len(values) > 1:
        return [statistics.mean(values), statistics.pstdev(values)]
    return [values[0], results[0].get("best_epoch" if header.startswith("epochs") else "std")]


def shows(text, value):
    """Whether `text`, a number as the document prints it, is `value` rounded as shown."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return value is not None and abs(float(text.replace(",", "")) - value) <= 0.5 * 10 ** -decimals + 1e-9


def problems_in_row(header, cells, names, where):
    """What is wrong with the numbers in one table row; `names`: the results the row names."""
    if cells[0].lower().startswith("published"):
        return []
    files = sorted(set(JSON_FILE.findall(" ".join(cells))))
    problems = []
    for title, cell in zip((title.lower() for title in header), cells):
        numbers = NUMBER.findall(cell)
        measured = any(re.search(pattern, title) for pattern in MEASURED)
        if title.startswith("published") or not numbers or not (measured or "%" in cell):
            continue
        if len(files) != 1:
            problems.append(f"{where}: {cell!r} ({title}) comes from no file: the row names {files or 'none'}")
            continue
        answer = expected(json.loads((ROOT / files[0]).read_text()), title, names + re.findall(r"`([^`]+)`", title))
        if isinstance(answer, str):
            problems.append(f"{where}: {cell!r} ({title}): {files[0]} {answer}")
            continue
        shown = 2 if "±" in cell or (title.startswith("epochs") and "(" in cell) else 1
        if len(numbers) != shown:
            problems.append(f"{where}: {cell!r} ({title}) holds {len(numbers)} numbers, expected {shown}")
        for text, value in zip(numbers, answer[:shown]):
            if not shows(text, value):
                problems.append(f"{where}: {text} ({title}), but {files[0]} holds {value}")
    return problems


def table_rows(path):
    """(header cells, row cells, line number) for every row of every Markdown table in `path`."""
    header = None
    for number, line in enumerate((ROOT / path).read_text().splitlines(), 1):
        if not line.startswith("|"):
            header = None
        elif header is None:
            header = [cell.strip() for cell in line.strip("|").split("|")]
        elif not set(line) <= set("|-: "):  # not the |---| line under the header
            yield header, [cell.strip() for cell in line.strip("|").split("|")], number


def printouts(path):
    """The same for the result tables that `python main.py` prints, in `path`'s code blocks: the
    header line's words are the columns, and the block's command names the file."""
    lines = (ROOT / path).read_text().splitlines()
    for start, line in enumerate(lines):
        if line.startswith("Test accuracy on"):
            opening = max(i for i in range(start) if lines[i].startswith("```"))
            files = JSON_FILE.findall(" ".join(lines[opening:start]))
            number = start + 2
            while not lines[number].startswith("```"):
                yield lines[start + 1].split() + ["file"], lines[number].split() + files, number + 1
                number += 1


def test_every_number_in_the_documents_matches_its_results_file():
    problems, rows = [], 0
    for path in DOCUMENTS:
        for header, cells, number in table_rows(path):
            names = re.findall(r"`([^`]+)`", " ".join(cells))
            problems += problems_in_row(header, cells, names, f"{path}:{number}")
            rows += 1
        for header, cells, number in printouts(path):
            problems += problems_in_row(header, cells, cells[:1], f"{path}:{number}")
            rows += 1
    assert rows > 50, "too few table rows found: has the documents' Markdown changed shape?"
    assert not problems, "\n".join(problems)
