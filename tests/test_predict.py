"""predict.py: the committed example images, images in disguise, and files that are not images."""
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import predict
from conftest import ROOT, SHARED_DATA, needs_data
from data import CLASS_NAMES, load_dataset
from train import save_model, saved_dataset

EXAMPLES = ROOT / "docs" / "examples"
DATASETS = ["mnist", "notmnist"]


def examples(dataset):
    """The committed example images of `dataset`, with the class each file name says."""
    found = {path: path.stem.split("-")[1] for path in sorted(EXAMPLES.glob(f"{dataset}-*.png"))}
    assert len(found) >= 8, f"the example images of {dataset} are missing from {EXAMPLES}"
    return found


@pytest.fixture(scope="module", params=DATASETS)
def example_model(request):
    dataset = request.param
    return dataset, keras.models.load_model(EXAMPLES / f"{dataset}-l42_mlp.keras")


def test_examples_are_classified_correctly(example_model):
    dataset, net = example_model
    truth = examples(dataset)
    answers, errors = predict.predict_files(net, list(truth), dataset)
    assert errors == {}
    assert {path: top[0][0] for path, top in answers.items()} == truth
    for top in answers.values():
        assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]


@pytest.mark.parametrize("dataset", DATASETS)
def test_disguises_are_undone(dataset):
    """Inverted, enlarged and tall versions give the model the very image of the original;
    the coloured one nearly (its ink and paper are not pure black and white)."""
    for path, label in examples(dataset).items():
        original = predict.load_image(EXAMPLES / f"{dataset}-{label}.png")
        image = predict.load_image(path)
        assert image.shape == (28, 28, 1) and image.dtype == np.float32
        assert 0 <= image.min() and image.max() <= 1
        if path.stem.endswith("-rgb"):
            assert np.corrcoef(image.ravel(), original.ravel())[0, 1] > 0.99, path.name
        else:
            np.testing.assert_allclose(image, original, atol=1e-6, err_msg=path.name)
        if dataset == "mnist":  # framed as MNIST frames its digits, a disguise still gives the original
            framed = predict.load_image(path, dataset="mnist")
            assert np.corrcoef(framed.ravel(), original.ravel())[0, 1] > 0.99, path.name


def test_original_is_read_as_data_py_reads_it():
    path = EXAMPLES / "mnist-7.png"
    pixels = np.asarray(Image.open(path))
    np.testing.assert_array_equal(predict.load_image(path)[..., 0], pixels.astype("float32") / 255)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    pixels = np.asarray(Image.open(EXAMPLES / "mnist-7.png")).astype(np.uint16) * 257  # 0-255 -> 0-65535
    Image.fromarray(pixels).save(tmp_path / "seven16.png")
    assert Image.open(tmp_path / "seven16.png").mode.startswith("I;16")
    np.testing.assert_allclose(predict.load_image(tmp_path / "seven16.png"),
                               predict.load_image(EXAMPLES / "mnist-7.png"), atol=1e-6)


def test_light_background_is_inverted_and_the_aspect_kept(tmp_path):
    page = np.full((60, 30), 255, np.uint8)  # a tall white page with a black vertical stroke
    page[10:50, 13:17] = 0
    Image.fromarray(page).save(tmp_path / "stroke.jpg")
    image = predict.load_image(tmp_path / "stroke.jpg")[..., 0]
    assert image[:, :5].max() < 0.05 and image[:, -5:].max() < 0.05  # the padding: dark background
    assert image[14, 14] > 0.9 and image[0, 14] < 0.1  # the stroke: light, and still vertical


def test_transparent_background_uses_the_opacity(tmp_path):
    drawing = np.zeros((56, 56, 4), np.uint8)  # black ink on a transparent background
    drawing[10:46, 24:32, 3] = 255
    Image.fromarray(drawing, "RGBA").save(tmp_path / "drawing.png")
    image = predict.load_image(tmp_path / "drawing.png")[..., 0]
    assert image[14, 14] > 0.9 and image[2, 2] == 0


def bad_files(folder):
    (folder / "x.png").write_text("this is not an image")
    (folder / "empty.png").write_bytes(b"")
    return [folder / "x.png", folder / "empty.png", folder / "missing.png"]


def test_unreadable_files_get_errors_and_the_others_answers(example_model, tmp_path):
    dataset, net = example_model
    good = list(examples(dataset))[:2]
    bad = bad_files(tmp_path)
    answers, errors = predict.predict_files(net, [bad[0], good[0], bad[1], good[1], bad[2]], dataset)
    assert list(answers) == good
    assert list(errors) == bad
    for path, message in errors.items():
        assert str(path) in message
    assert "no such file" in errors[bad[2]]


def run_cli(*args):
    return subprocess.run([sys.executable, "predict.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_answers_the_good_files_and_fails_for_the_bad(tmp_path):
    x_png, empty_png, _ = bad_files(tmp_path)
    seven, two = EXAMPLES / "mnist-7-112px-inverted-rgb.png", EXAMPLES / "mnist-2.png"
    done = run_cli(EXAMPLES / "mnist-l42_mlp.keras", seven, x_png, two, empty_png)
    assert done.returncode != 0
    lines = done.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(seven), str(two)]
    assert lines[0].split(": ")[1].startswith("7 ") and lines[1].split(": ")[1].startswith("2 ")
    assert len(lines[0].split(", ")) == 3  # the top 3
    assert f"error: {x_png}: not a readable image" in done.stderr
    assert f"error: {empty_png}: not a readable image" in done.stderr
    assert "2 of 4 files could not be read" in done.stderr


def test_main_uses_the_dataset_class_names(capsys):
    predict.main([str(EXAMPLES / "notmnist-l42_mlp.keras"), str(EXAMPLES / "notmnist-B-inverted.png"),
                  "--dataset", "notmnist"])
    assert capsys.readouterr().out.startswith(f"{EXAMPLES / 'notmnist-B-inverted.png'}: B ")


def test_missing_or_broken_model(tmp_path):
    with pytest.raises(SystemExit) as exit:
        predict.main([str(tmp_path / "nope.keras"), str(EXAMPLES / "mnist-7.png")])
    assert f"error: model file {tmp_path / 'nope.keras'} not found" in str(exit.value.code)
    (tmp_path / "broken.keras").write_text("not a model")
    with pytest.raises(SystemExit) as exit:
        predict.main([str(tmp_path / "broken.keras"), str(EXAMPLES / "mnist-7.png")])
    assert f"error: cannot load the model {tmp_path / 'broken.keras'}" in str(exit.value.code)
    two_classes = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    two_classes.save(tmp_path / "two.keras")
    with pytest.raises(SystemExit) as exit:  # a model for another number of classes
        predict.load_model(str(tmp_path / "two.keras"), "fashion")
    assert "has 2 outputs, but fashion has 10 classes" in str(exit.value.code)


LETTERS_MODEL = EXAMPLES / "notmnist-l42_mlp.keras"  # saved by make_examples.py as main.py --save saves: with its dataset


def test_a_saved_model_names_its_own_classes(capsys):
    assert saved_dataset(LETTERS_MODEL) == "notmnist" and saved_dataset(EXAMPLES / "mnist-l42_mlp.keras") == "mnist"
    predict.main([str(LETTERS_MODEL), str(EXAMPLES / "notmnist-B-inverted.png")])
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{EXAMPLES / 'notmnist-B-inverted.png'}: B ") and captured.err == ""


def test_a_model_of_each_dataset_names_that_datasets_classes_without_a_flag(tmp_path, capsys):
    net = keras.models.load_model(EXAMPLES / "mnist-l42_mlp.keras")
    for dataset, names in CLASS_NAMES.items():  # the same weights, recorded as trained on each dataset
        save_model(net, tmp_path / f"{dataset}.keras", dataset)
        predict.main([str(tmp_path / f"{dataset}.keras"), str(EXAMPLES / "mnist-7.png")])
        captured = capsys.readouterr()
        answers = captured.out.split(": ", 1)[1].split(", ")
        assert len(answers) == 3 and all(answer.rsplit(" ", 1)[0] in names for answer in answers), captured.out
        assert captured.err == ""


def test_a_dataset_flag_that_contradicts_the_model_is_refused():
    with pytest.raises(SystemExit) as exit:
        predict.main([str(LETTERS_MODEL), str(EXAMPLES / "mnist-7.png"), "--dataset", "mnist"])
    assert str(exit.value.code) == f"error: the model {LETTERS_MODEL} was trained on notmnist, not mnist: leave out --dataset"


def test_an_older_model_file_gets_digits_with_a_warning(tmp_path, capsys):
    older = tmp_path / "older.keras"  # saved by Keras alone, as main.py saved models before they named their dataset
    keras.models.load_model(EXAMPLES / "mnist-l42_mlp.keras").save(older)
    assert saved_dataset(older) is None
    predict.main([str(older), str(EXAMPLES / "mnist-7.png")])
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{EXAMPLES / 'mnist-7.png'}: 7 ")
    assert "does not say which dataset it was trained on" in captured.err


def test_invert_can_be_forced_either_way():
    """A glyph that fills its frame fools the automatic choice; --invert yes/no overrides it."""
    path = EXAMPLES / "mnist-7.png"
    light_on_dark = predict.load_image(path, invert="no")
    np.testing.assert_allclose(predict.load_image(path, invert="yes"), 1 - light_on_dark, atol=1e-6)
    np.testing.assert_array_equal(predict.load_image(path), light_on_dark)  # auto: the border is dark
    inverted = EXAMPLES / "mnist-7-inverted.png"
    np.testing.assert_allclose(predict.load_image(inverted, invert="no"), 1 - light_on_dark, atol=1e-6)


def test_a_tightly_cropped_digit_is_framed_as_mnist_frames_its_digits(tmp_path):
    """MNIST's digits sit in a 20x20 box centred by their centre of mass: a digit cropped to its
    ink and enlarged is framed back to nearly the original, where filling the frame is not."""
    original = np.asarray(Image.open(EXAMPLES / "mnist-7.png"))
    rows, cols = np.nonzero(original)
    cropped = original[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    Image.fromarray(cropped).resize((cropped.shape[1] * 3, cropped.shape[0] * 3)).save(tmp_path / "tight.png")
    framed = predict.load_image(tmp_path / "tight.png", dataset="mnist")[..., 0]
    filled = predict.load_image(tmp_path / "tight.png")[..., 0]
    similarity = lambda image: np.corrcoef(image.ravel(), original.ravel())[0, 1]
    assert similarity(framed) > 0.9 > similarity(filled) + 0.2
    ink_rows, ink_cols = np.nonzero(framed)
    assert np.ptp(ink_rows) < predict.DIGIT_BOX and np.ptp(ink_cols) < predict.DIGIT_BOX
    centre = (np.indices(framed.shape) * framed).sum(axis=(1, 2)) / framed.sum()
    assert np.all(np.abs(centre - 14) <= 0.5)


def test_a_blank_image_is_framed_without_error(tmp_path):
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "blank.png")
    assert predict.load_image(tmp_path / "blank.png", dataset="mnist").max() == 0


@pytest.fixture(scope="module")
def check_predict():
    """docs/examples/check_predict.py, as a module."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import check_predict
        yield check_predict
    finally:
        sys.path.remove(str(EXAMPLES))


@needs_data
def test_disguised_test_digits_are_read_back_as_the_model_reads_the_originals(check_predict, tmp_path):
    """Real MNIST test digits cropped to their ink, enlarged and coloured: predict.py answers as the
    model does on the originals (the README has the figure for 1,000 digits)."""
    dataset = load_dataset("mnist", SHARED_DATA)
    net = keras.models.load_model(EXAMPLES / "mnist-l42_mlp.keras")
    result = check_predict.check(net, dataset, 40, tmp_path)
    assert len(list(tmp_path.glob("*.png"))) == 40
    assert result["changed_answers"] <= 1
    assert result["predict_py_accuracy"] >= result["same_digits_accuracy"] - 1 / 40
    first = np.asarray(Image.open(sorted(tmp_path.glob("*.png"))[0]))
    assert first.ndim == 3 and first.shape[2] == 3 and first.shape[0] > 28  # in colour, enlarged
    assert np.median(first) > 200  # light paper: dark ink on it, inverted from the original


@needs_data
def test_the_disguise_check_wants_an_mnist_model_and_a_sensible_count(check_predict, tmp_path):
    with pytest.raises(SystemExit) as exit:
        check_predict.main([str(LETTERS_MODEL)])
    assert str(exit.value.code) == f"error: {LETTERS_MODEL} was trained on notmnist: this check disguises MNIST digits"
    with pytest.raises(SystemExit) as exit:
        check_predict.main([str(EXAMPLES / "mnist-l42_mlp.keras"), "--images", "0", "--data-dir", str(SHARED_DATA),
                            "--out", str(tmp_path / "check.json")])
    assert str(exit.value.code) == "error: --images must be between 1 and 10000, got 0"
    assert list(tmp_path.iterdir()) == []
