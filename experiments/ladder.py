"""Beating MNIST: the 13-model ladder from a linear model to pseudo-labelling (seed 004).

The notebook climbs from 66.37% to 99.58% MNIST test accuracy, one idea per model:
input normalisation, hidden layers, convolutions, max pooling, a VGG-style stack, batch
norm, dropout, augmentation, learning-rate annealing, averaging, pseudo-labelling. The
models below have the notebook's layer shapes and parameter counts, channels-last.

Honesty: every model trains on (at most) 54,000 training images and watches a 6,000-image
validation split carved (seeded) from the training set. The test set is scored once per
trained model, after training, and never chooses anything. The notebook validated on the
test set (its `validation_data=(X_val, y_val)` is the test set) and its pseudo-labelling
labels the test images, so every published number here is "test (leaky)". Its epochs
and learning rates are fixed in advance, so nothing here needs the validation split to
choose; the averaging and pseudo-labelling rungs, which the notebook only names, are
done properly: averaging averages the predictions of independently trained networks,
and pseudo-labelling labels an unlabelled pool carved from the training split, never
the test images.
"""
from dataclasses import replace

import keras
import numpy as np
from keras import layers, ops

from experiments.runner import MOVING_BATCH_NORM, Step, train_averaged, train_step
from model import RandomAffine

DATASET = "mnist"
NORMALISED = dict(standardize=True)  # the seed's normalize_input: (X - mean) / std over all pixels
KERAS1_BATCH_SIZE = 32  # the default batch size of Keras 1's model.fit, which the seed relies on
GENERATOR_BATCH_SIZE = 128  # the seed's gen.flow(X, y, batch_size=128)
# The seed's ImageDataGenerator(rotation_range=10, shear_range=0.1, zoom_range=0.1): degrees, radians, +-10%.
AUGMENTATION = dict(rotation=10, shear=0.1, zoom=0.1)
KERAS1_EPSILON = 1e-7  # Keras 1 clipped probabilities to [1e-7, 1 - 1e-7] before taking their log
# The seed's fits one after another, each at the learning rate set just before it: (epochs, learning rate).
# (In Keras 1, `model.optimizer.lr = x` after the first fit most likely left the already compiled
# training function unchanged: rung 1's log keeps moving during its "1e-8" epochs as if at 1e-3.
# We follow the code as written.)
LINEAR_FITS = [(10, 0.001), (5, 1e-8)]
ANNEALING_FITS = [(1, 1e-4), (3, 1e-2), (4, 1e-2), (5, 1e-3), (5, 1e-4), (5, 1e-5), (5, 1e-7)]
ENSEMBLE_SIZE = 3  # networks averaged in rung 12; the seed names no number
PSEUDO_LABEL_FRACTION = 0.25  # of the training split, unlabelled: 1/4 of each batch is pseudo-labelled
LEAKY = "test (leaky)"
LEAK = "leaky: the seed validated on the test set"


# --- The 13 models, as the notebook writes them (Theano's channels-first -> channels-last) ---

def ladder_linear(input_shape, num_classes):
    """Rung 1, "Linear regression": a softmax layer on raw 0-255 pixels. Published: 66.37%."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Rescaling(255.0),  # the seed fed raw pixels; data.py scales them to [0, 1]
        layers.Flatten(),
        layers.Dense(num_classes, activation="softmax"),
    ], name="ladder_linear")


def ladder_normalised(input_shape, num_classes):
    """Rung 2, "adding data normalisation": the same layer on standardised pixels. Published: 92.44%."""
    return keras.Sequential([
        keras.Input(shape=input_shape),  # standardised by data.py (Step data=NORMALISED)
        layers.Flatten(),
        layers.Dense(num_classes, activation="softmax"),
    ], name="ladder_normalised")


def ladder_hidden_layer(input_shape, num_classes):
    """Rung 3, "One hidden layer": 784-100 (sigmoid)-10. Published: 97.03%."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),
        layers.Dense(100, activation="sigmoid"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="ladder_hidden_layer")


def ladder_deeper(input_shape, num_classes):
    """Rung 4, "Even more layers": three ReLU layers of 200. Published: 97.75%."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),
        layers.Dense(200, activation="relu"),
        layers.Dense(200, activation="relu"),
        layers.Dense(200, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="ladder_deeper")


def ladder_convolutions(input_shape, num_classes):
    """Rung 5, "Convolutions": three 3x3 convolutions of 7 filters. Published: 98.49%."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Conv2D(7, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(7, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(7, (3, 3), activation="relu", padding="same"),
        layers.Flatten(),
        layers.Dense(num_classes, activation="softmax"),
    ], name="ladder_convolutions")


def ladder_max_pooling(input_shape, num_classes):
    """Rung 6, "MaxPooling": 7-14-28-28 filters with 2x2 pooling between. Published: 98.37%."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Conv2D(7, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.Conv2D(14, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.Conv2D(28, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.Conv2D(28, (3, 3), activation="relu", padding="same"),
        layers.Flatten(),
        layers.Dense(num_classes, activation="softmax"),
    ], name="ladder_max_pooling")


def ladder_vgg(input_shape, num_classes):
    """Rung 7, "Vgg style": blocks of 2-2-3-3 convolutions, pooling, Dense(100). Published: 96.94%."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Conv2D(7, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(7, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.Conv2D(14, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(14, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.Conv2D(28, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(28, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(28, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.Conv2D(56, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(56, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(56, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.Flatten(),
        layers.Dense(100, activation="sigmoid"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="ladder_vgg")


def ladder_batch_norm(input_shape, num_classes):
    """Rung 8, "BatchNormalization": the VGG stack with batch norm after each pooling. Published: 98.93%."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Conv2D(7, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(7, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.BatchNormalization(),  # the seed's axis=1 is the channels axis: -1 here
        layers.Conv2D(14, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(14, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.BatchNormalization(),
        layers.Conv2D(28, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(28, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(28, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.BatchNormalization(),
        layers.Conv2D(56, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(56, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(56, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.BatchNormalization(),
        layers.Flatten(),
        layers.Dense(100, activation="sigmoid"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="ladder_batch_norm")


def ladder_dropout(input_shape, num_classes):
    """Rung 9, "Regularisation. Dropout": rung 8 plus dropout 0.1-0.5. Published: 98.98%."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Conv2D(7, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(7, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.BatchNormalization(),
        layers.Dropout(0.1),
        layers.Conv2D(14, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(14, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.BatchNormalization(),
        layers.Dropout(0.2),
        layers.Conv2D(28, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(28, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(28, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.BatchNormalization(),
        layers.Dropout(0.3),
        layers.Conv2D(56, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(56, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(56, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2)),
        layers.BatchNormalization(),
        layers.Dropout(0.4),
        layers.Flatten(),
        layers.Dense(100, activation="sigmoid"),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ], name="ladder_dropout")


def ladder_augmentation(input_shape, num_classes):
    """Rung 10, "Data augmentation": rung 9 on randomly rotated, sheared, zoomed images. Published: 99.27%.

    The seed's ImageDataGenerator(rotation_range=10, zoom_range=0.1, shear_range=0.1) and
    fit_generator are gone from Keras 3: the same transforms are the model's first layer,
    active only while training.
    """
    network = ladder_dropout(input_shape, num_classes)  # rung 9's layers, unchanged
    return keras.Sequential([keras.Input(shape=input_shape), RandomAffine(**AUGMENTATION), *network.layers],
                            name="ladder_augmentation")


def ladder_annealing(input_shape, num_classes):
    """Rung 11, "Training annealing": rung 10's network, trained 28 epochs at falling learning rates.

    The seed repeats rung 10's code unchanged; only the training differs (ANNEALING_FITS).
    Published: 99.39%.
    """
    model = ladder_augmentation(input_shape, num_classes)
    model.name = "ladder_annealing"
    return model


def ladder_pseudo_labelling(input_shape, num_classes):
    """Rung 13, "Pseudo-labeling": rung 11's network, trained on true and pseudo-labels.

    The labels of an unlabelled pool come from a teacher of the same kind (see
    train_pseudo_labelled). Published: 99.58%.
    """
    model = ladder_augmentation(input_shape, num_classes)
    model.name = "ladder_pseudo_labelling"
    return model


# --- How the seed trained them ---------------------------------------------------------

def keras1_crossentropy(y_true, y_pred):
    """Cross-entropy on clipped probabilities, as Keras 1 computed it.

    Keras 3 on TensorFlow computes it from the logits behind a softmax instead, so a
    confidently wrong image still has a gradient; in Keras 1 its clipped probability had
    none, which is why the seed's raw-pixel model stalls near 63% (rung 1).
    """
    return ops.sparse_categorical_crossentropy(y_true, ops.clip(y_pred, KERAS1_EPSILON, 1 - KERAS1_EPSILON))


def fits_at_learning_rates(fits):
    """The seed's successive fits, with `model.optimizer.lr = ...` before each, as one run.

    Keras 3 has no such assignment between fits: a LearningRateScheduler callback sets
    each epoch's learning rate instead, [(epochs, learning rate), ...] in the seed's order.
    Returns training settings (epochs, callbacks) for Step(training=...).
    """
    rates = [rate for epochs, rate in fits for _ in range(epochs)]
    def scheduler():
        return keras.callbacks.LearningRateScheduler(
            lambda epoch, learning_rate: rates[min(epoch, len(rates) - 1)])
    return dict(epochs=len(rates), callbacks=[scheduler])


def train_averaged_annealing(trial):
    """Rung 12: the mean prediction of ENSEMBLE_SIZE rung-11 networks, trained with different seeds."""
    return train_averaged(trial, ENSEMBLE_SIZE)[1]


def train_pseudo_labelled(trial):
    """Rung 13: hide the labels of a quarter of the training split, let a teacher label it, retrain.

    The teacher (rung 11's recipe) learns from the other three quarters; its predictions
    become the pool's labels; the student (the same recipe, from scratch) learns from all
    of the training split, a quarter of each batch pseudo-labelled on average. The
    validation and test images are never pseudo-labelled.
    """
    dataset = trial.dataset
    order = np.random.default_rng(trial.seed).permutation(len(dataset.x_train))
    pool, labelled = np.split(order, [round(PSEUDO_LABEL_FRACTION * len(order))])
    labelled_only = replace(dataset, x_train=dataset.x_train[labelled], y_train=dataset.y_train[labelled])
    teacher, teacher_result = train_step(trial, labelled_only, part="teacher")
    pseudo_labels = np.argmax(teacher.predict(dataset.x_train[pool], verbose=0), axis=1)
    pseudo_labelled = replace(
        dataset,
        x_train=np.concatenate([dataset.x_train[labelled], dataset.x_train[pool]]),
        y_train=np.concatenate([dataset.y_train[labelled], pseudo_labels.astype(dataset.y_train.dtype)]))
    _, result = train_step(trial, pseudo_labelled, part="student")
    return {**result,
            "pseudo_label_accuracy": float(np.mean(pseudo_labels == dataset.y_train[pool])),  # training labels
            "teacher_val_accuracy": teacher_result["val_accuracy"],
            "teacher_test_accuracy": teacher_result["test_accuracy"]}


LINEAR = dict(batch_size=KERAS1_BATCH_SIZE, loss=keras1_crossentropy, **fits_at_learning_rates(LINEAR_FITS))
FIVE_EPOCHS = dict(MOVING_BATCH_NORM, batch_size=KERAS1_BATCH_SIZE, epochs=5)  # model.fit(X, y, nb_epoch=5, ...)
FOUR_EPOCHS = dict(batch_size=KERAS1_BATCH_SIZE, epochs=4)
AUGMENTED = dict(MOVING_BATCH_NORM, batch_size=GENERATOR_BATCH_SIZE, epochs=10)  # fit_generator(batch_gen, ..., nb_epoch=10)
ANNEALED = dict(MOVING_BATCH_NORM, batch_size=GENERATOR_BATCH_SIZE, **fits_at_learning_rates(ANNEALING_FITS))

STEPS = [
    Step("1 linear (raw pixels)", ladder_linear, published=66.37, published_on=LEAKY, training=LINEAR,
         note=f"{LEAK}; its log's last epoch shows 62.63%. 10 epochs, then 5 at lr 1e-8, batch 32; "
              "the loss is Keras 1's cross-entropy on clipped probabilities (see keras1_crossentropy)"),
    Step("2 + input normalisation", ladder_normalised, published=92.44, published_on=LEAKY,
         training=FIVE_EPOCHS, data=NORMALISED, note=f"{LEAK}; its log's last epoch shows 91.95%"),
    Step("3 + hidden layer (100 sigmoid)", ladder_hidden_layer, published=97.03, published_on=LEAKY,
         training=FIVE_EPOCHS, data=NORMALISED,
         note=f"{LEAK}; its log continues an earlier fit (98.36% train accuracy at epoch 1)"),
    Step("4 3x200 ReLU layers", ladder_deeper, published=97.75, published_on=LEAKY, training=FIVE_EPOCHS,
         data=NORMALISED, note=f"{LEAK}; its log's last epoch shows 96.88%"),
    Step("5 convolutions", ladder_convolutions, published=98.49, published_on=LEAKY, training=FIVE_EPOCHS,
         data=NORMALISED, note=f"{LEAK}; its log's last epoch shows 98.22%"),
    Step("6 + max pooling", ladder_max_pooling, published=98.37, published_on=LEAKY, training=FIVE_EPOCHS,
         data=NORMALISED, note=LEAK),
    Step("7 VGG style", ladder_vgg, published=96.94, published_on=LEAKY, training=FOUR_EPOCHS,
         data=NORMALISED, note=f"{LEAK}; its log's last epoch shows 97.82%"),
    Step("8 + batch norm", ladder_batch_norm, published=98.93, published_on=LEAKY, training=FIVE_EPOCHS,
         data=NORMALISED, note=f"{LEAK}; 98.93% is its best epoch (4 of 5), the last shows 97.12%"),
    Step("9 + dropout", ladder_dropout, published=98.98, published_on=LEAKY, training=FIVE_EPOCHS,
         data=NORMALISED, note=LEAK),
    Step("10 + augmentation (rotate, shear, zoom)", ladder_augmentation, published=99.27, published_on=LEAKY,
         training=AUGMENTED, data=NORMALISED,
         note=f"{LEAK}; its ImageDataGenerator(rotation_range=10, shear_range=0.1, zoom_range=0.1) is "
              "a RandomAffine layer in the model here"),
    Step("11 + learning-rate annealing", ladder_annealing, published=99.39, published_on=LEAKY,
         training=ANNEALED, data=NORMALISED,
         note=f"{LEAK} and reports its best epoch; 28 epochs: 1 at lr 1e-4, 7 at 1e-2, then 5 each at "
              "1e-3, 1e-4, 1e-5, 1e-7, set by a LearningRateScheduler; batch 128 and augmentation throughout "
              "(the seed's first 4 epochs: batch 64, not augmented)"),
    Step("12 + averaging", ladder_annealing, published=99.5, published_on=LEAKY, training=ANNEALED,
         data=NORMALISED, run=train_averaged_annealing,
         note=f"{LEAK} (no code shown); the mean of {ENSEMBLE_SIZE} independently trained rung-11 networks' "
              "predictions"),
    Step("13 + pseudo-labelling", ladder_pseudo_labelling, published=99.58, published_on=LEAKY,
         training=ANNEALED, data=NORMALISED, run=train_pseudo_labelled,
         note=f"{LEAK} and pseudo-labelled the test images (no code shown); here a rung-11 teacher trained "
              f"on {1 - PSEUDO_LABEL_FRACTION:.0%} of the training split labels the other "
              f"{PSEUDO_LABEL_FRACTION:.0%}, and a rung-11 student learns from both"),
]

# Every model whose summary the seed prints, with its "Total params". Keras 1 counted only
# trainable weights: Keras 3 also counts batch norm's moving mean and variance (2 per channel).
BATCH_NORM_MOVING_STATISTICS = 2 * (7 + 14 + 28 + 56)
PUBLISHED_PARAMS = [
    (ladder_linear, {}, 7_850),
    (ladder_normalised, {}, 7_850),
    (ladder_hidden_layer, {}, 79_510),
    (ladder_deeper, {}, 239_410),
    (ladder_convolutions, {}, 55_856),
    (ladder_max_pooling, {}, 14_136),
    (ladder_vgg, {}, 98_354),
    (ladder_batch_norm, {}, 98_564 + BATCH_NORM_MOVING_STATISTICS),
    (ladder_dropout, {}, 98_564 + BATCH_NORM_MOVING_STATISTICS),
    (ladder_annealing, {}, 98_564 + BATCH_NORM_MOVING_STATISTICS),  # rung 10's summary is not printed
]
