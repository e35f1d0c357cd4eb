"""Pictures of what a trained model learned: learning curves, mistakes, confusion, robustness.

    python main.py --model l42_mlp spark_baseline --epochs 3 --plots plots/

writes these PNG files in plots/ (DATASET and MODEL are the names given to main.py):

    DATASET-learning_curves.png        loss and accuracy per epoch, every model on the same axes
    DATASET-robustness.png             test accuracy against rotation angle, every model
    DATASET-MODEL-mistakes.png         misclassified test images, the most confident first
    DATASET-MODEL-extremes.png         per class: most confidently wrong, least confidently right
    DATASET-MODEL-confusion.png        true against predicted class, with counts
    DATASET-MODEL-augmentation.png     training images before and after the model's augmentation
                                       (only for models that have an augmentation layer)

Each picture is drawn by a plain function that takes numpy arrays (images, labels,
probabilities, class names), a title and a path, so you can draw it for any model:

    probabilities = keras_model.predict(x_test)
    plots.plot_confusion_matrix(y_test, probabilities, class_names, "my model", "confusion.png")
"""
import os

import numpy as np
from keras import layers, ops
from matplotlib.backends.backend_agg import FigureCanvasAgg  # the non-interactive backend
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from data import atomic_file, rotated
from model import RandomAffine, RandomShift

DPI = 100  # pixels per inch of the PNG files
ROBUSTNESS_IMAGES = 1000  # the first N test images: the rotation curves take seconds, not minutes
ANGLES = np.arange(-45, 50, 5)  # degrees, counter-clockwise, -45 ... 45
MISTAKES_SHOWN = 24  # misclassified test images in the mistakes grid
MISTAKES_COLUMNS = 6
EXTREMES_PER_CLASS = 3  # most confidently wrong and least confidently right, per class
AUGMENTED_IMAGES = 8  # training images shown before and after augmentation
AUGMENTED_DRAWS = 3  # augmented versions of each: the augmentation is random
PREDICT_BATCH = 256
RIGHT, WRONG = "tab:green", "tab:red"
DATASET_TITLES = {"mnist": "MNIST", "fashion": "Fashion-MNIST", "notmnist": "notMNIST"}
# Layers that change training images at random (and do nothing at inference).
AUGMENTATION_LAYERS = (RandomShift, RandomAffine, layers.RandomTranslation, layers.RandomRotation,
                       layers.RandomZoom, layers.RandomFlip, layers.RandomContrast)


def plot_all(folder, dataset, results, models):
    """Draw every picture for the trained `models` (with main.py's `results`) into `folder`.

    Returns the paths of the PNG files written.
    """
    os.makedirs(folder, exist_ok=True)
    title = DATASET_TITLES.get(dataset.name, dataset.name)
    names = unique_names([result["name"] for result in results])
    labels = np.asarray(dataset.y_test)
    labels = labels.argmax(-1) if labels.ndim > 1 else labels  # one-hot labels, too
    path = lambda *parts: os.path.join(folder, "-".join((dataset.name, *parts)) + ".png")
    written = []

    plot_learning_curves([result["history"] for result in results], names,
                         [result["best_epoch"] for result in results],
                         f"{title}: learning curves of {', '.join(names)}", path("learning_curves"))
    written.append(path("learning_curves"))

    # Every model sees the same rotated images: rotate once, predict once per model.
    subset = slice(0, ROBUSTNESS_IMAGES)
    turned = rotate_images(dataset.x_test[subset], ANGLES)
    accuracies = [accuracy_per_angle(predictor(m), turned, labels[subset]) for m in models]
    plot_robustness(ANGLES, accuracies, names, f"{title}: test accuracy of rotated images "
                    f"({len(turned[0])} test images)", path("robustness"))
    written.append(path("robustness"))

    for name, keras_model in zip(names, models):
        probabilities = predictor(keras_model)(dataset.x_test)
        about = f"{title}, {name}"
        plot_mistakes(dataset.x_test, labels, probabilities, dataset.class_names, about, path(name, "mistakes"))
        plot_extremes(dataset.x_test, labels, probabilities, dataset.class_names, about, path(name, "extremes"))
        plot_confusion_matrix(labels, probabilities, dataset.class_names, about, path(name, "confusion"))
        written += [path(name, "mistakes"), path(name, "extremes"), path(name, "confusion")]

        augmenters = augmentation_layers(keras_model)
        if augmenters:  # nothing to show for a model that trains on the images as they are
            originals = dataset.x_train[:AUGMENTED_IMAGES]
            plot_augmentation(originals, augment(augmenters, originals),
                              f"{about}: what {', '.join(type(a).__name__ for a in augmenters)} "
                              f"does to training images", path(name, "augmentation"))
            written.append(path(name, "augmentation"))
    print(f"Wrote {len(written)} pictures to {folder}")
    return written


def predictor(keras_model):
    """A function from images to class probabilities (inference mode: no dropout, no augmentation)."""
    return lambda images: keras_model.predict(images, batch_size=PREDICT_BATCH, verbose=0)


def unique_names(names):
    """['a', 'b', 'a'] -> ['a', 'b', 'a#2']: one file and one legend entry per model."""
    return [name if names[:i].count(name) == 0 else f"{name}#{names[:i].count(name) + 1}"
            for i, name in enumerate(names)]


# --- Learning curves -------------------------------------------------------------------

def plot_learning_curves(histories, names, best_epochs, title, path):
    """Training (solid) and validation (dashed) loss and accuracy per epoch; one colour per model.

    histories: Keras History.history dicts (loss, accuracy, val_loss, val_accuracy).
    best_epochs: the 1-based epoch whose weights each model kept; marked with a star.
    """
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    axes = figure.subplots(1, 2)
    for index, (history, name, best) in enumerate(zip(histories, names, best_epochs)):
        colour = f"C{index}"
        for ax, metric in zip(axes, ("loss", "accuracy")):
            epochs = np.arange(1, len(history[metric]) + 1)
            ax.plot(epochs, history[metric], "-o", color=colour, markersize=3, label=f"{name}, training")
            ax.plot(epochs, history[f"val_{metric}"], "--o", color=colour, markersize=3,
                    label=f"{name}, validation")
            ax.plot(best, history[f"val_{metric}"][best - 1], "*", color=colour, markersize=14,
                    markeredgecolor="black", label=f"{name}, best epoch ({best}): weights kept")
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.xaxis.get_major_locator().set_params(integer=True)  # no epoch 1.5
        ax.grid(alpha=0.3)
    figure.legend(*axes[1].get_legend_handles_labels(), loc="outside lower center",
                  ncols=len(names), fontsize="small")  # one column per model, below the curves
    figure.suptitle(title)
    save_figure(figure, path)


# --- Mistakes --------------------------------------------------------------------------

def plot_mistakes(images, labels, probabilities, class_names, title, path, count=MISTAKES_SHOWN):
    """A grid of misclassified images, 'true -> predicted (confidence)', most confident first.

    Returns the indices of the images shown.
    """
    predicted, confidence = probabilities.argmax(-1), probabilities.max(-1)
    wrong = np.flatnonzero(predicted != labels)
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    rows = max(1, -(-len(shown) // MISTAKES_COLUMNS))
    figure = Figure(figsize=(1.6 * MISTAKES_COLUMNS, 1.8 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, MISTAKES_COLUMNS, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, i in zip(axes, shown):
        draw_image(ax, images[i], f"{class_names[labels[i]]} → {class_names[predicted[i]]}\n"
                   f"({confidence[i]:.0%})", WRONG)
    if not len(shown):
        axes[0].text(0, 0.5, "no misclassified images", fontsize="large")
    figure.suptitle(f"{title}: {len(wrong)} of {len(labels)} test images misclassified\n"
                    f"true → predicted (confidence), the most confident mistakes first")
    save_figure(figure, path)
    return shown


def extremes(labels, probabilities, per_class=EXTREMES_PER_CLASS):
    """For each class c: its images the model got wrong with the highest confidence, and
    its images the model got right with the lowest confidence.

    Returns one (wrong_indices, right_indices) pair per class, each at most `per_class` long.
    """
    predicted, confidence = probabilities.argmax(-1), probabilities.max(-1)
    pairs = []
    for c in range(probabilities.shape[-1]):
        wrong = np.flatnonzero((labels == c) & (predicted != c))
        right = np.flatnonzero((labels == c) & (predicted == c))
        pairs.append((wrong[np.argsort(-confidence[wrong], kind="stable")][:per_class],
                      right[np.argsort(confidence[right], kind="stable")][:per_class]))
    return pairs


def plot_extremes(images, labels, probabilities, class_names, title, path, per_class=EXTREMES_PER_CLASS):
    """One row per class: its most confidently wrong images (left), least confidently right (right).

    Returns what `extremes` returns.
    """
    predicted, confidence = probabilities.argmax(-1), probabilities.max(-1)
    pairs = extremes(labels, probabilities, per_class)
    figure = Figure(figsize=(2.5 * per_class + 1.5, 1.3 * len(pairs) + 1), layout="constrained")
    wrong_side, right_side = figure.subfigures(1, 2, width_ratios=[per_class + 1, per_class], wspace=0.05)
    wrong_axes = wrong_side.subplots(len(pairs), per_class, squeeze=False)
    right_axes = right_side.subplots(len(pairs), per_class, squeeze=False)
    for c, (wrong, right) in enumerate(pairs):
        for ax in (*wrong_axes[c], *right_axes[c]):
            ax.set(aspect="equal", title=" ")  # empty cells keep an image's shape and a caption's room:
            ax.title.set_fontsize("small")      # the rows of the two sides stay aligned
            ax.set_axis_off()
        wrong_axes[c, 0].text(-0.25, 0.5, class_names[c], transform=wrong_axes[c, 0].transAxes,
                              ha="right", va="center", fontsize="large", fontweight="bold")
        for ax, i in zip(wrong_axes[c], wrong):
            draw_image(ax, images[i], f"→ {class_names[predicted[i]]} ({confidence[i]:.0%})", WRONG)
        for ax, i in zip(right_axes[c], right):
            draw_image(ax, images[i], f"{class_names[c]} ({confidence[i]:.0%})", RIGHT)
    wrong_side.suptitle("most confidently wrong", color=WRONG)
    right_side.suptitle("least confidently right", color=RIGHT)
    figure.suptitle(f"{title}: the hardest test images of each class (row: true class)\n"
                    f"captions: predicted class (confidence)")
    save_figure(figure, path)
    return pairs


# --- Confusion matrix ------------------------------------------------------------------

def confusion_matrix(labels, predicted, num_classes):
    """counts[t, p]: how many images of true class t were predicted as class p."""
    return np.bincount(np.asarray(labels) * num_classes + np.asarray(predicted),
                       minlength=num_classes ** 2).reshape(num_classes, num_classes)


def plot_confusion_matrix(labels, probabilities, class_names, title, path):
    """The confusion matrix with its counts in the cells; returns the counts."""
    n = len(class_names)
    counts = confusion_matrix(labels, probabilities.argmax(-1), n)
    figure = Figure(figsize=(7.5, 7), layout="constrained")
    ax = figure.subplots()
    # The diagonal dwarfs the mistakes; a power-law colour scale keeps small counts visible.
    ax.imshow(counts, cmap="Blues", norm=PowerNorm(0.4, vmin=0, vmax=max(1, counts.max())))
    for (t, p), count in np.ndenumerate(counts):
        dark = count > 0.3 * counts.max()
        ax.text(p, t, count, ha="center", va="center", fontsize="small",
                color="white" if dark else "black" if count else "0.7")
    long_names = max(len(name) for name in class_names) > 2
    ax.set_xticks(range(n), class_names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticks(range(n), class_names)
    ax.set(xlabel="predicted class", ylabel="true class")
    accuracy = np.trace(counts) / max(1, counts.sum())
    figure.suptitle(f"{title}: confusion matrix\n{counts.sum()} test images, accuracy {accuracy:.2%}")
    save_figure(figure, path)
    return counts


# --- Augmentation ----------------------------------------------------------------------

def augmentation_layers(keras_model):
    """The model's augmentation layers, in the order the model applies them."""
    return [layer for layer in keras_model.layers if isinstance(layer, AUGMENTATION_LAYERS)]


def augment(augmenters, images, draws=AUGMENTED_DRAWS):
    """`draws` independent passes of `images` through the augmentation layers, in training
    mode (the only mode in which they do anything). Returns shape (draws, *images.shape).

    This assumes, as every model here does, that augmentation comes first, on the input.
    """
    results = []
    for _ in range(draws):
        batch = images
        for layer in augmenters:
            batch = layer(batch, training=True)
        results.append(ops.convert_to_numpy(batch))
    return np.stack(results)


def plot_augmentation(originals, augmented, title, path):
    """Originals in the top row; below, one row per augmented draw of the same images.

    Drawn on the originals' scale, so standardised images look like the others."""
    rows = [originals, *augmented]
    value_range = (float(np.min(originals)), float(np.max(originals)))
    figure = Figure(figsize=(1.2 * len(originals) + 1.2, 1.3 * len(rows) + 0.7), layout="constrained")
    axes = figure.subplots(len(rows), len(originals), squeeze=False)
    for r, (row, batch) in enumerate(zip(axes, rows)):
        for ax, image in zip(row, batch):
            draw_image(ax, image, value_range=value_range)
        row[0].text(-0.1, 0.5, "original" if r == 0 else f"augmented\n(draw {r})", transform=row[0].transAxes,
                    ha="right", va="center")
    figure.suptitle(title)
    save_figure(figure, path)


# --- Robustness to rotation ------------------------------------------------------------

def rotate_images(images, angles=ANGLES):
    """Every image rotated by every angle (data.rotated). Returns shape (len(angles), *images.shape)."""
    return np.stack([rotated(images, np.full(len(images), angle)) for angle in angles])


def accuracy_per_angle(predict, turned, labels):
    """The accuracy on each angle's images (rotate_images); `predict` maps images to class probabilities."""
    angles, count = turned.shape[:2]
    predicted = predict(turned.reshape(angles * count, *turned.shape[2:])).argmax(-1)  # one batch: fast
    return (predicted.reshape(angles, count) == labels).mean(axis=1)


def plot_robustness(angles, accuracies, names, title, path):
    """Accuracy against rotation angle, one curve per model."""
    figure = Figure(figsize=(8, 5), layout="constrained")
    ax = figure.subplots()
    for index, (accuracy, name) in enumerate(zip(accuracies, names)):
        ax.plot(angles, accuracy, "-o", color=f"C{index}", markersize=4, label=name)
    ax.axvline(0, color="0.6", linewidth=1)
    ax.set(xlabel="rotation angle (degrees, counter-clockwise)", ylabel="test accuracy", ylim=(0, 1.02),
           xticks=angles[::3] if len(angles) > 10 else angles)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    save_figure(figure, path)


# --- A hyperparameter search (experiments/tune.py) ---------------------------------------

def plot_search(path, trials, title):
    """Each trial's validation accuracy, in the order the trials started, and the best so far.

    trials: dicts with "val_accuracy" (None for a trial that failed)."""
    scores = np.array([np.nan if trial["val_accuracy"] is None else trial["val_accuracy"] for trial in trials])
    numbers = np.arange(1, len(scores) + 1)
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.subplots()
    ax.plot(numbers, scores, "o", color="C0", label="trial")
    ax.step(numbers, np.fmax.accumulate(scores), where="post", color="C1", label="best so far")
    ax.set(xlabel="trial (in the order started)", ylabel="validation accuracy", title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    save_figure(figure, path)


# --- Helpers ---------------------------------------------------------------------------

def draw_image(ax, image, caption=None, colour="black", value_range=(0, 1)):
    """One greyscale image, value_range from black to white, without ticks, with an optional caption."""
    ax.imshow(np.squeeze(image), cmap="gray", vmin=value_range[0], vmax=value_range[1])
    ax.set_axis_off()
    if caption:
        ax.set_title(caption, fontsize="small", color=colour)


def save_figure(figure, path):
    with atomic_file(path, "wb") as file:
        FigureCanvasAgg(figure).print_figure(file, format="png", dpi=DPI)
