"""experiments/: every tutorial runs end to end in --quick mode, and its models have the seed's sizes."""
import importlib
import json

import pytest

from conftest import SHARED_DATA
from experiments.__main__ import EXPERIMENTS, main
from model import get_model

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


def test_unknown_step_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["spark", "--steps", "no such step", "--quick"])
    assert "spark has no step no such step" in capsys.readouterr().err
