"""plots.py: every picture is a valid PNG, and the numbers behind the pictures are right."""
import os

import keras
import numpy as np
import pytest
from PIL import Image

import plots
from data import CLASS_NAMES, Dataset
from model import get_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL_MODELS = {  # as the tutorials build them, only narrower: a training step takes milliseconds
    "l42_mlp": dict(hidden_size=16),
    "spark_finetuned": dict(ensemble=1, conv_depth=4, hidden_size=16),
}


def assert_png(path, min_side=300, max_side=2000):
    """A complete PNG file that decodes, of a size a person can read on a screen."""
    with open(path, "rb") as file:
        assert file.read(8) == PNG_SIGNATURE, f"{path} is not a PNG file"
    with Image.open(path) as image:
        image.load()  # decodes every pixel: a truncated file fails here
        width, height = image.size
    assert min_side <= width <= max_side and min_side <= height <= max_side, (path, image.size)


def tiny_dataset(name="fashion", n=64):
    rng = np.random.default_rng(0)
    images = lambda count: rng.random((count, 28, 28, 1), dtype=np.float32)
    labels = lambda count: np.arange(count) % 10
    return Dataset(name, images(n), labels(n), images(16), labels(16), images(40), labels(40),
                   CLASS_NAMES[name], source="made up in the test")


def trained(name, dataset):
    """A tiny model after one epoch, with main.py's kind of results dict."""
    keras.utils.set_random_seed(0)
    net = get_model(name, (28, 28, 1), 10, **SMALL_MODELS[name])
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = net.fit(dataset.x_train, dataset.y_train, epochs=2, batch_size=32, verbose=0,
                      validation_data=(dataset.x_val, dataset.y_val)).history
    return net, {"name": name, "params": net.count_params(), "epochs_run": 2, "best_epoch": 1,
                 "test_accuracy": 0.1, "history": history}


@pytest.fixture(scope="module")
def two_models():
    dataset = tiny_dataset()
    pairs = [trained(name, dataset) for name in SMALL_MODELS]
    return dataset, [result for _, result in pairs], [net for net, _ in pairs]


def test_plot_all_writes_every_picture_once(two_models, tmp_path):
    """One picture of each kind per model, the shared ones once; a model given twice gets its own files."""
    dataset, (mlp_result, cnn_result), (mlp, cnn) = two_models
    folder = tmp_path / "new" / "plots"  # plot_all makes it
    written = plots.plot_all(str(folder), dataset, [mlp_result, cnn_result, mlp_result], [mlp, cnn, mlp])
    expected = {"fashion-learning_curves.png", "fashion-robustness.png",  # one each, shared by the models
                "fashion-l42_mlp-mistakes.png", "fashion-l42_mlp-extremes.png", "fashion-l42_mlp-confusion.png",
                "fashion-spark_finetuned-mistakes.png", "fashion-spark_finetuned-extremes.png",
                "fashion-spark_finetuned-confusion.png",
                "fashion-spark_finetuned-augmentation.png",  # l42_mlp has no augmentation: no picture
                "fashion-l42_mlp#2-mistakes.png", "fashion-l42_mlp#2-extremes.png", "fashion-l42_mlp#2-confusion.png"}
    assert sorted(os.listdir(folder)) == sorted(expected)  # and no temporary files left behind
    assert sorted(os.path.basename(p) for p in written) == sorted(expected)
    for name in expected:
        assert_png(folder / name)


def test_confusion_matrix_counts(tmp_path):
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2, 2, 0, 2])  # 0->1 once, 1->2 once, 2->0 once
    probabilities = np.eye(3)[predicted] * 0.7 + 0.1  # each row sums to 1, argmax = predicted
    counts = plots.plot_confusion_matrix(labels, probabilities, ["cat", "dog", "bird"], "MNIST, test",
                                         tmp_path / "confusion.png")
    assert counts.tolist() == [[2, 1, 0],
                               [0, 1, 1],
                               [1, 0, 3]]
    assert_png(tmp_path / "confusion.png")


def test_mistakes_and_extremes_pick_the_right_images(tmp_path):
    images = np.random.default_rng(0).random((6, 28, 28, 1), dtype=np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7],   # class 0: right, right, wrong (70%)
                              [0.8, 0.2], [0.45, 0.55], [0.1, 0.9]])  # class 1: wrong (80%), right, right
    shown = plots.plot_mistakes(images, labels, probabilities, ["zero", "one"], "MNIST, test", tmp_path / "m.png")
    assert shown.tolist() == [3, 2]  # the most confident mistake first
    pairs = plots.plot_extremes(images, labels, probabilities, ["zero", "one"], "MNIST, test",
                                tmp_path / "e.png", per_class=2)
    wrong, right = zip(*[(w.tolist(), r.tolist()) for w, r in pairs])
    assert wrong == ([2], [3])  # the only mistake of each class
    assert right == ([1, 0], [4, 5])  # the least confident right answers first
    assert_png(tmp_path / "m.png", min_side=150)  # one row of images: a wide strip
    assert_png(tmp_path / "e.png")


def test_no_mistakes_still_draws_a_picture(tmp_path):
    labels = np.arange(10)
    shown = plots.plot_mistakes(np.zeros((10, 28, 28, 1)), labels, np.eye(10)[labels], CLASS_NAMES["mnist"],
                                "MNIST, perfect", tmp_path / "m.png")
    assert len(shown) == 0
    assert_png(tmp_path / "m.png", min_side=100)


def bars(count=8):
    """Horizontal bars through the centre, of different lengths; label 0 means 'horizontal'."""
    images = np.zeros((count, 28, 28, 1), np.float32)
    for i in range(count):
        images[i, 13:15, 8 - i // 2:20 + i // 2] = 1
    return images, np.zeros(count, int)


def orientation(image):
    """The angle (degrees, 0-90) between the image's main axis and the horizontal (image moments)."""
    rows, cols = np.nonzero(image[..., 0] > 0.3)
    weights = image[rows, cols, 0]
    y, x = rows - np.average(rows, weights=weights), cols - np.average(cols, weights=weights)
    mu20, mu02, mu11 = (np.average(v, weights=weights) for v in (x * x, y * y, x * y))
    return abs(np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02)))


def test_robustness_rotates_by_the_angle(tmp_path):
    images, labels = bars()
    # A "model" that says class 0 (horizontal) when the bar lies within 22.5 degrees of horizontal.
    within = lambda batch: np.array([[1.0, 0.0] if orientation(x) < 22.5 else [0.0, 1.0] for x in batch])
    rotated = plots.rotate_images(images, plots.ANGLES)
    assert rotated.shape == (len(plots.ANGLES), *images.shape) and rotated.dtype == images.dtype
    accuracy = plots.accuracy_per_angle(within, rotated, labels)
    assert accuracy.tolist() == [1.0 if abs(angle) <= 20 else 0.0 for angle in plots.ANGLES]

    # A "model" that only knows the unrotated images: right at 0 degrees, wrong everywhere else.
    known = lambda batch: np.array([[1.0, 0.0] if any(np.allclose(x, i, atol=1e-6) for i in images)
                                    else [0.0, 1.0] for x in batch])
    accuracy = plots.accuracy_per_angle(known, rotated, labels)
    assert accuracy.tolist() == [1.0 if angle == 0 else 0.0 for angle in plots.ANGLES]

    plots.plot_robustness(plots.ANGLES, [accuracy, accuracy / 2], ["known", "half"], "MNIST, test",
                          tmp_path / "r.png")
    assert_png(tmp_path / "r.png")


def test_robustness_of_a_round_image_is_flat():
    yy, xx = np.mgrid[:28, :28]
    disk = ((yy - 13.5) ** 2 + (xx - 13.5) ** 2 < 8 ** 2).astype(np.float32)[None, ..., None]
    rotated = plots.rotate_images(disk, plots.ANGLES)
    assert np.abs(rotated - disk).max() < 0.6  # only the rim's interpolation changes
    brightness = lambda batch: np.array([[1.0, 0.0] if x.sum() > 0.9 * disk.sum() else [0.0, 1.0] for x in batch])
    assert plots.accuracy_per_angle(brightness, rotated, np.array([0])).tolist() == [1.0] * len(plots.ANGLES)


def test_augmentation_shows_what_the_layer_does(two_models, tmp_path):
    dataset, _, (mlp, cnn) = two_models
    assert plots.augmentation_layers(mlp) == []
    layers = plots.augmentation_layers(cnn)
    assert [type(layer).__name__ for layer in layers] == ["RandomShift"]
    originals = dataset.x_train[:4]
    augmented = plots.augment(layers, originals, draws=2)
    assert augmented.shape == (2, *originals.shape)
    assert not np.allclose(augmented[0], originals)  # training mode: the images moved
    assert not np.allclose(augmented[0], augmented[1])  # at random
    plots.plot_augmentation(originals, augmented, "Fashion-MNIST, test", tmp_path / "a.png")
    assert_png(tmp_path / "a.png")


def test_learning_curves_mark_the_best_epoch(tmp_path):
    history = {"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.6, 0.7],
               "accuracy": [0.5, 0.8, 0.9], "val_accuracy": [0.45, 0.75, 0.7]}
    plots.plot_learning_curves([history], ["one"], [2], "MNIST, one", tmp_path / "lc.png")
    assert_png(tmp_path / "lc.png")


def test_an_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    plots.plot_learning_curves([{"loss": [1], "val_loss": [1], "accuracy": [0], "val_accuracy": [0]}],
                               ["one"], [1], "old", tmp_path / "lc.png")
    before = (tmp_path / "lc.png").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        plots.plot_learning_curves([{"loss": [2], "val_loss": [2], "accuracy": [1], "val_accuracy": [1]}],
                                   ["one"], [1], "new", tmp_path / "lc.png")
    assert (tmp_path / "lc.png").read_bytes() == before  # the old picture, whole
    assert os.listdir(tmp_path) == ["lc.png"]  # and no temporary file


def test_affine_augmentation_is_found_and_drawn_on_the_images_scale(tmp_path, monkeypatch):
    from experiments.ladder import ladder_augmentation
    layers = plots.augmentation_layers(ladder_augmentation((28, 28, 1), 10))
    assert [type(layer).__name__ for layer in layers] == ["RandomAffine"]
    standardised = (np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32") - 0.13) / 0.31
    augmented = plots.augment(layers, standardised, draws=2)
    assert not np.allclose(augmented[0], standardised)
    plots.plot_augmentation(standardised, augmented, "MNIST, standardised", tmp_path / "a.png")
    assert_png(tmp_path / "a.png")
    ranges = []  # black and white are the originals' darkest and brightest values, not 0 and 1
    monkeypatch.setattr(plots, "draw_image", lambda *args, value_range=(0, 1), **kwargs: ranges.append(value_range))
    plots.plot_augmentation(standardised, augmented, "MNIST, standardised", tmp_path / "b.png")
    assert ranges == [(float(standardised.min()), float(standardised.max()))] * 12
