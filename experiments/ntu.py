"""NTU lecture 3-3 "Tricks for improving neural network" on MNIST, slide by slide (seed 003).

The lecture starts from the 784-30-10 sigmoid network of the previous lecture, trained
with a mean squared error and plain SGD (96.62% test), and tries one trick at a time:
cross-entropy against MSE (with a two-neuron "slow learning" demonstration), a softmax
output, overtraining on 10,000 images and its cures (L2, dropout, early stopping), batch
norm, tripling the training data with rotated copies, the learning rate, momentum, the
batch size, the optimizer, the activation, a 512-512 network with dropout and Adadelta
(98.49% test), deeper networks, and a convolutional network whose kernel size the
students vary and which they finally test on rotated digits (practices 01 and 02).
It prints three test accuracies (96.62%, 96.35%, 98.49%) and one run with early stopping
(93.48% test); everything else is a plot, so those steps have no published number.

Honesty:
- Every model trains on the runner's training split (54,000 images, or the lecture's
  10,000-image subset of it) and watches a separate 6,000-image validation split (seeded,
  from the training set). The lecture trained on all 60,000 images and, in its overtraining
  and sweep demos, plotted curves against the test set (`validation_data=(x_test, y_test)`);
  here those curves watch the validation split. It chose nothing from those curves, and
  none of its printed numbers came from them.
- One step trains the MSE baseline on all 60,000 images, as the lecture did, to measure what
  the 6,000 held-out images cost it: it chooses nothing on the validation split.
- Early stopping looks only at the validation split (as the lecture itself recommends).
- The test set is scored once per trained model, after training. The table lines the
  variants up side by side for reading; no variant is picked from their test accuracies.

Where the seed leaves a setting out (batch size and optimizer of some demos, the code of
the convolutional network), the choice made here is said in a comment or the step's note.
"""
import dataclasses

import keras
import numpy as np
from keras import layers, regularizers
from data import Dataset, rotated
from experiments.runner import MOVING_BATCH_NORM, Step, train_step
from model import activation_layer

DATASET = "mnist"
SUBSET = 10_000  # the lecture's x_train[:10000] in its overtraining demos (examples 04 to 06)
ONE_HOT = dict(one_hot=True)  # MSE and binary cross-entropy compare the 10 outputs with one-hot labels

# l303-example-01: SGD(lr=3.0), batch 10, 20 epochs, mean squared error.
BASELINE = dict(optimizer="sgd", learning_rate=3.0, batch_size=10, epochs=20, loss="mean_squared_error")
# l303-example-02/02a: the two-neuron demo, SGD(lr=1.0), 100 epochs of 1,000 points in batches of 100.
TOY = dict(optimizer="sgd", learning_rate=1.0, batch_size=100, epochs=100)
# l303-example-04 to 05: SGD(lr=1.0), batch 120, 100 epochs. Examples 06 to 06e show only plots and
# parts of their code (no fit line, or no optimizer); they are taken to train the same way, on the
# same 10,000 images, since the lecture says "Full training sample" first for example 07.
DEMO = dict(optimizer="sgd", learning_rate=1.0, batch_size=120, epochs=100)
SWEEP = {**DEMO, "learning_rate": 2.0}  # SGD(lr=2.0): the reference of examples 06a, 06b and 06c
# l303-example-07: Adadelta(), batch 128, 20 epochs. Old Keras's Adadelta defaulted to lr=1.0,
# Keras 3's to 0.001: keep the lecture's effective 1.0.
ADADELTA = dict(optimizer="adadelta", learning_rate=1.0, batch_size=128, epochs=20)
ROTATION = (5.0, 25.0)  # degrees, either way: l303-example-05's rotate(img, uniform(+-5, +-25))


# --- The lecture's models -------------------------------------------------------------
# Keras 3: the input shape goes in keras.Input, not in the first layer's input_shape=.

def sigmoid_30(input_shape, num_classes):
    """Slide "Building network with Keras" (l303-example-01): 784-30-10, sigmoid everywhere.

    Published: 96.62% test with MSE and SGD(lr=3), batch 10, 20 epochs.
    """
    model = keras.Sequential(name="sigmoid_30")
    model.add(keras.Input(shape=input_shape))
    model.add(layers.Reshape((784,)))
    model.add(layers.Dense(30, activation="sigmoid"))
    model.add(layers.Dense(num_classes, activation="sigmoid"))
    return model


def two_neurons(input_shape, num_classes):
    """Slide "Slow learning with bad weights" (l303-example-02): 1 input -> 1 neuron -> 1 output.

    The weights start at the lecture's bad values, w=2, b=3 and w=4, b=5 (its set_weights),
    so the output starts near 1 while every target is 0. It publishes a loss plot, no number.
    """
    model = keras.Sequential(name="two_neurons")
    model.add(keras.Input(shape=input_shape))
    model.add(layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(2.0),
                           bias_initializer=keras.initializers.Constant(3.0)))
    model.add(layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(4.0),
                           bias_initializer=keras.initializers.Constant(5.0)))
    return model


def softmax_30(input_shape, num_classes, l2=0.0, l1=0.0):
    """Slide "Try it out!" (l303-example-03): 784-30-10, sigmoid hidden layer, softmax output.

    Published: 96.35% test with categorical cross-entropy and SGD(lr=1), batch 30, 20 epochs.
    l2 / l1: weight decay on the output layer's weights only, as on slide "Regularization (III)"
    (l303-example-04a, l2(0.01); L1 is practice 01's trial #1). It plots, publishes no number.
    """
    penalty = regularizers.L1L2(l1=l1, l2=l2) if (l1 or l2) else None
    model = keras.Sequential(name="softmax_30")
    model.add(keras.Input(shape=input_shape))
    model.add(layers.Reshape((784,)))
    model.add(layers.Dense(30, activation="sigmoid"))
    model.add(layers.Dense(num_classes, activation="softmax", kernel_regularizer=penalty))
    return model


def dropout_30(input_shape, num_classes):
    """Slide "Dropout (II)" (l303-example-04b): 784-30-10 dropping 20% of each layer's inputs.

    Published: a plot only.
    """
    model = keras.Sequential(name="dropout_30")
    model.add(keras.Input(shape=input_shape))
    model.add(layers.Reshape((784,)))
    model.add(layers.Dropout(0.2))
    model.add(layers.Dense(30, activation="sigmoid"))
    model.add(layers.Dropout(0.2))
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model


def sigmoid_128x3(input_shape, num_classes, batch_norm=False):
    """Slide "Batch normalization (III)" (l303-example-04d): 784-128-128-128-10, sigmoid.

    batch_norm: normalise the input and every hidden layer's output (the lecture's m2).
    Published: a plot only.
    """
    model = keras.Sequential(name="sigmoid_128x3_bn" if batch_norm else "sigmoid_128x3")
    model.add(keras.Input(shape=input_shape))
    model.add(layers.Reshape((784,)))
    for _ in range(3):
        if batch_norm:
            model.add(layers.BatchNormalization())
        model.add(layers.Dense(128, activation="sigmoid"))
    if batch_norm:
        model.add(layers.BatchNormalization())
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model


def mlp_256x2(input_shape, num_classes, activation="sigmoid"):
    """Slides "Different activation function (III) and (V)" (l303-example-06d/06e): 784-256-256-10.

    activation: "sigmoid", "relu" or "leaky_relu" (slope 0.1: the lecture's LeakyReLU(alpha=0.1)).
    Published: plots only.
    """
    options = dict(negative_slope=0.1) if activation == "leaky_relu" else {}
    model = keras.Sequential(name=f"mlp_256x2_{activation}")
    model.add(keras.Input(shape=input_shape))
    model.add(layers.Reshape((784,)))
    for _ in range(2):
        model.add(layers.Dense(256))
        model.add(activation_layer(activation, **options))
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model


def relu_512x2_dropout(input_shape, num_classes):
    """Slide "Larger/deeper network?" (l303-example-07): 784-512-512-10, ReLU, dropout 0.2.

    Published: 98.49% test with Adadelta, batch 128, 20 epochs; 669,706 parameters.
    """
    model = keras.Sequential(name="relu_512x2_dropout")
    model.add(keras.Input(shape=input_shape))
    model.add(layers.Reshape((784,)))
    model.add(layers.Dense(512, activation="relu"))
    model.add(layers.Dropout(0.2))
    model.add(layers.Dense(512, activation="relu"))
    model.add(layers.Dropout(0.2))
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model


def relu_256_deep(input_shape, num_classes, hidden_layers=2):
    """Slide "Larger/deeper network? (III)": 784-(256 x hidden_layers)-10.

    The lecture shows only the accuracy curves of 256x2, x4 (40 epochs) and x8 (100 epochs).
    The layers here follow example 07 just before it: ReLU, each followed by dropout 0.2.
    """
    model = keras.Sequential(name=f"relu_256x{hidden_layers}")
    model.add(keras.Input(shape=input_shape))
    model.add(layers.Reshape((784,)))
    for _ in range(hidden_layers):
        model.add(layers.Dense(256, activation="relu"))
        model.add(layers.Dropout(0.2))
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model


def cnn(input_shape, num_classes, kernel_size=5):
    """Slide "Hands-on session" (l303-example-08, practice 01 trial #2): a CNN with 5x5 kernels.

    The seed names the file and its 5x5 kernels but shows neither its code nor an accuracy.
    This is the classic small CNN the lecture's path follows (Nielsen's chapter 6): 20 kernels,
    2x2 max-pooling, 100 hidden neurons (ReLU), softmax; kernel_size is the practice's 3, 5 or 7.
    """
    model = keras.Sequential(name=f"cnn_{kernel_size}x{kernel_size}")
    model.add(keras.Input(shape=input_shape))  # (28, 28, 1): the images already have a channel axis
    model.add(layers.Conv2D(20, (kernel_size, kernel_size), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Flatten())
    model.add(layers.Dense(100, activation="relu"))
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model


# --- Steps that are more than one plain fit ---------------------------------------------

def slow_learning(trial):
    """l303-example-02/02a: fit the two-neuron model to 1,000 Gaussian inputs whose target is 0.

    The MNIST dataset is not used. Its "test accuracy" is the share of 1,000 fresh Gaussian
    inputs whose output is below 0.5 after training; how fast it learned is the first epoch
    whose running training accuracy is 100% (`epochs_to_learn` in the JSON report).
    """
    rng = np.random.default_rng(trial.seed)
    gaussian = lambda: rng.standard_normal((1000, 1)).astype("float32")  # x_train = np.random.randn(1000)
    zeros = np.zeros((1000, 1), "float32")  # y_train = np.zeros(1000)
    toy = Dataset("gaussian", gaussian(), zeros, gaussian(), zeros, gaussian(), zeros,
                  class_names=["0", "1"], source="numpy.random")
    _, result = train_step(trial, toy)
    learned = [epoch for epoch, accuracy in enumerate(result["history"]["accuracy"], 1) if accuracy == 1.0]
    return {**result, "epochs_to_learn": learned[0] if learned else None,
            "first_epoch_loss": result["history"]["loss"][0], "last_epoch_loss": result["history"]["loss"][-1]}


def first_10000(dataset):
    """The lecture's x_train[:10000]: our training split is already shuffled by the seed."""
    return dataclasses.replace(dataset, x_train=dataset.x_train[:SUBSET], y_train=dataset.y_train[:SUBSET])


def on_10000_images(trial):
    """Train on the first 10,000 training images only (examples 04 to 06)."""
    return train_step(trial, first_10000(trial.dataset))[1]


def on_all_60000_images(trial):
    """Train on the training and validation splits together, all 60,000 images, as the lecture
    did: for a step that chooses nothing on the validation split (no early stopping, no
    schedule that watches it). Its val_accuracy is then measured on images it trained on."""
    dataset = trial.dataset
    everything = dataclasses.replace(dataset, x_train=np.concatenate([dataset.x_train, dataset.x_val]),
                                     y_train=np.concatenate([dataset.y_train, dataset.y_val]))
    return train_step(trial, everything)[1]


def tripled_by_rotation(trial):
    """l303-example-05: the 10,000 images, plus a copy turned +5..+25 degrees, plus one turned -5..-25."""
    small = first_10000(trial.dataset)
    rng = np.random.default_rng([trial.seed, 5])
    low, high = ROTATION
    ext1 = rotated(small.x_train, rng.uniform(low, high, len(small.x_train)))
    ext2 = rotated(small.x_train, rng.uniform(-high, -low, len(small.x_train)))
    tripled = dataclasses.replace(small, x_train=np.concatenate([small.x_train, ext1, ext2]),
                                  y_train=np.concatenate([small.y_train] * 3))
    return train_step(trial, tripled)[1]


def on_rotated_test_images(trial):
    """Practice 02: train as usual, then score the trained model on rotated test images.

    Every test image is turned once, by a random 5 to 25 degrees, clockwise or counter-clockwise
    at random (example 05's two ranges). `test_accuracy` is the accuracy on those rotated
    images; the same model's accuracy on the upright test images is `upright_test_accuracy`.
    """
    model, result = train_step(trial)
    test_images = trial.dataset.x_test
    rng = np.random.default_rng([trial.seed, 2])
    low, high = ROTATION
    angles = rng.uniform(low, high, len(test_images)) * rng.choice([-1, 1], len(test_images))
    rotated_test = model.evaluate(rotated(test_images, angles), trial.dataset.y_test, verbose=0, return_dict=True)
    return {**result, "upright_test_accuracy": result["test_accuracy"], "upright_test_loss": result["test_loss"],
            "test_accuracy": rotated_test["accuracy"], "test_loss": rotated_test["loss"]}


PUBLISHED_PARAMS = [(relu_512x2_dropout, {}, 669_706)]  # "This network has 669,706 parameters"

SUBSET_NOTE = "trained on 10,000 images (the lecture's x_train[:10000]); "
CURVES_NOTE = "the lecture plots its curves against the test set and prints no number"

STEPS = [
    # Lecture start: the previous lecture's network, rebuilt with Keras.
    Step("784-30-10 sigmoid + MSE, SGD lr 3", sigmoid_30, published=96.62, training=BASELINE, data=ONE_HOT,
         note="the lecture trained on all 60,000 images; here 54,000 (6,000 held out for validation)"),
    Step("784-30-10 sigmoid + MSE, SGD lr 3, all 60,000 images", sigmoid_30, published=96.62, training=BASELINE,
         data=ONE_HOT, run=on_all_60000_images,
         note="the row above trained as the lecture did, on the validation images too (nothing is chosen "
              "on them here); its val_accuracy in the JSON is on images it trained on"),

    # Slow learning with bad initial weights, and the cure: cross-entropy.
    Step("slow learning: 2 neurons, MSE", two_neurons, run=slow_learning,
         training={**TOY, "loss": "mean_squared_error"},
         note="toy data, not MNIST: 1,000 Gaussian x, target 0, bad initial weights; 'test' = share of "
              "1,000 fresh x with output < 0.5; compare epochs_to_learn in the JSON (the lecture: a loss plot)"),
    Step("slow learning: 2 neurons, cross-entropy", two_neurons, run=slow_learning,
         training={**TOY, "loss": "binary_crossentropy"},
         note="as the row above with binary cross-entropy (l303-example-02a), whose loss plot falls from the start"),
    Step("784-30-10 sigmoid + binary cross-entropy, SGD lr 3", sigmoid_30, data=ONE_HOT,
         training={**BASELINE, "loss": "binary_crossentropy"},
         note="the lecture's first remedy for slow learning, shown on MNIST without code or number: "
              "the MSE baseline with the loss swapped"),
    Step("784-30-10 softmax + cross-entropy, SGD lr 1, batch 30", softmax_30, published=96.35,
         training=dict(optimizer="sgd", learning_rate=1.0, batch_size=30, epochs=20),
         note="integer labels with sparse categorical cross-entropy: the same loss as the lecture's "
              "categorical cross-entropy on one-hot labels"),

    # Overtraining and its cures, on 10,000 images (examples 04 to 04d).
    Step("overtraining: 784-30-10 softmax, 10,000 images", softmax_30, run=on_10000_images, training=DEMO,
         note=SUBSET_NOTE + "100 epochs; " + CURVES_NOTE),
    Step("more data: 784-30-10 softmax, all images", softmax_30, training=DEMO,
         note="slide 'Training data does matter': as the row above on all 54,000 images; " + CURVES_NOTE),
    Step("+ L2 0.01 on the output layer", softmax_30, run=on_10000_images, training=DEMO,
         hyperparameters=dict(l2=0.01), note=SUBSET_NOTE + CURVES_NOTE + " (l303-example-04a)"),
    Step("+ L1 0.01 on the output layer (practice 01)", softmax_30, run=on_10000_images, training=DEMO,
         hyperparameters=dict(l1=0.01), note=SUBSET_NOTE + "practice 01 trial #1: example 04a with L1"),
    Step("+ dropout 0.2", dropout_30, run=on_10000_images, training=DEMO,
         note=SUBSET_NOTE + CURVES_NOTE + " (l303-example-04b)"),
    Step("+ early stopping, patience 3", softmax_30, run=on_10000_images, published=93.48,
         training={**DEMO, "patience": 3},
         note=SUBSET_NOTE + "stops on the 6,000-image validation split's loss (the lecture: the last 10,000 "
              "training images; it stopped after 21 epochs at 93.73% validation). Keras 2 kept the last "
              "epoch's weights; train.py restores the best epoch's"),
    Step("784-128-128-128-10 sigmoid, 60 epochs", sigmoid_128x3, run=on_10000_images,
         training={**DEMO, "epochs": 60},
         note=SUBSET_NOTE + "the compile line is cut off in the seed: SGD lr 1 and batch 120 as examples "
              "04-04c; " + CURVES_NOTE),
    Step("784-128-128-128-10 sigmoid + batch norm, 60 epochs", sigmoid_128x3, run=on_10000_images,
         hyperparameters=dict(batch_norm=True), training={**DEMO, **MOVING_BATCH_NORM, "epochs": 60},
         note=SUBSET_NOTE + "l303-example-04d's m2; settings as the row above"),
    Step("+ rotated copies: 3 x 10,000 images", softmax_30, run=tripled_by_rotation, training=DEMO,
         note="l303-example-05: the 10,000 images, one copy turned by U(+5, +25) degrees and one by "
              "U(-25, -5) (skimage.transform.rotate); compare 'overtraining: 784-30-10 softmax, 10,000 images'; "
              + CURVES_NOTE),

    # The learning method (examples 06 to 06c), on the same 10,000 images and 784-30-10 softmax.
    Step("SGD lr 0.2", softmax_30, run=on_10000_images, training={**DEMO, "learning_rate": 0.2},
         note=SUBSET_NOTE + "batch 120, 100 epochs (not shown in l303-example-06); " + CURVES_NOTE),
    Step("SGD lr 2", softmax_30, run=on_10000_images, training=SWEEP,
         note=SUBSET_NOTE + "the reference of examples 06, 06a and 06c; " + CURVES_NOTE),
    Step("SGD lr 20", softmax_30, run=on_10000_images, training={**DEMO, "learning_rate": 20.0},
         note=SUBSET_NOTE + "too large a step: 'more likely a random walk'; " + CURVES_NOTE),
    Step("SGD lr 2 + momentum 0.4", softmax_30, run=on_10000_images,
         training={**SWEEP, "optimizer_options": dict(momentum=0.4)},
         note=SUBSET_NOTE + "l303-example-06a; compare 'SGD lr 2'; " + CURVES_NOTE),
    Step("SGD lr 2, batch 10", softmax_30, run=on_10000_images, training={**SWEEP, "batch_size": 10},
         note=SUBSET_NOTE + "l303-example-06b shows 100 epochs but not its optimizer: SGD lr 2 as 06a; "
              + CURVES_NOTE),
    Step("SGD lr 2, batch 30", softmax_30, run=on_10000_images, training={**SWEEP, "batch_size": 30},
         note=SUBSET_NOTE + "as the row above"),
    Step("SGD lr 2, batch 300", softmax_30, run=on_10000_images, training={**SWEEP, "batch_size": 300},
         note=SUBSET_NOTE + "as the row above"),
    Step("RMSprop lr 0.001", softmax_30, run=on_10000_images,
         training={**DEMO, "optimizer": "rmsprop", "learning_rate": 0.001},
         note=SUBSET_NOTE + "l303-example-06c's RMSprop() defaults (the same in Keras 3); compare 'SGD lr 2'"),
    Step("Adadelta lr 1.0", softmax_30, run=on_10000_images,
         training={**DEMO, "optimizer": "adadelta", "learning_rate": 1.0},
         note=SUBSET_NOTE + "l303-example-06c's Adadelta(): old Keras's default lr 1.0 (Keras 3's is 0.001)"),

    # Activation functions on a larger network (examples 06d and 06e), 40 epochs.
    Step("784-256-256-10 sigmoid, SGD lr 1", mlp_256x2, run=on_10000_images, training={**DEMO, "epochs": 40},
         note=SUBSET_NOTE + "batch 120 (not shown); " + CURVES_NOTE),
    Step("784-256-256-10 ReLU, SGD lr 0.2", mlp_256x2, run=on_10000_images,
         hyperparameters=dict(activation="relu"), training={**DEMO, "epochs": 40, "learning_rate": 0.2},
         note=SUBSET_NOTE + "batch 120 (not shown); " + CURVES_NOTE),
    Step("784-256-256-10 Leaky ReLU 0.1, SGD lr 0.2", mlp_256x2, run=on_10000_images,
         hyperparameters=dict(activation="leaky_relu"), training={**DEMO, "epochs": 40, "learning_rate": 0.2},
         note=SUBSET_NOTE + "l303-example-06e; batch 120 (not shown); " + CURVES_NOTE),

    # Larger and deeper networks on the full training set (example 07 and after).
    Step("784-512-512-10 ReLU + dropout 0.2, Adadelta", relu_512x2_dropout, published=98.49, training=ADADELTA,
         note="the lecture trained on all 60,000 images; here 54,000. Adadelta's lr 1.0 is old Keras's "
              "default (Keras 3's is 0.001)"),
    Step("784-(256 x 2)-10, 40 epochs", relu_256_deep, hyperparameters=dict(hidden_layers=2),
         training={**ADADELTA, "epochs": 40},
         note="the lecture shows curves only and not the code: ReLU, dropout 0.2 and Adadelta as example 07"),
    Step("784-(256 x 4)-10, 40 epochs", relu_256_deep, hyperparameters=dict(hidden_layers=4),
         training={**ADADELTA, "epochs": 40}, note="as the row above"),
    Step("784-(256 x 8)-10, 100 epochs", relu_256_deep, hyperparameters=dict(hidden_layers=8),
         training={**ADADELTA, "epochs": 100}, note="as the row above"),

    # The convolutional network and the hands-on practices.
    Step("CNN, 5x5 kernels", cnn, training=ADADELTA,
         note="l303-example-08's code is not in the seed: 20 5x5 kernels, 2x2 max-pool, 100 ReLU, softmax; "
              "trained as example 07 (Adadelta lr 1.0, batch 128, 20 epochs)"),
    Step("CNN, 3x3 kernels (practice 01)", cnn, hyperparameters=dict(kernel_size=3), training=ADADELTA,
         note="practice 01 trial #2; otherwise as 'CNN, 5x5 kernels'"),
    Step("CNN, 7x7 kernels (practice 01)", cnn, hyperparameters=dict(kernel_size=7), training=ADADELTA,
         note="practice 01 trial #2; otherwise as 'CNN, 5x5 kernels'"),
    Step("CNN, 5x5 kernels, on rotated test images (practice 02)", cnn, run=on_rotated_test_images,
         training=ADADELTA,
         note="trained as 'CNN, 5x5 kernels' on upright images; measured on the 10,000 test images each "
              "turned by a random 5-25 degrees, either way at random (skimage.transform.rotate); the "
              "upright accuracy of the same model is upright_test_accuracy in the JSON"),
]
