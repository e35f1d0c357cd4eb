"""The tutorials' models, written the way the tutorials write them (Keras functional API),
and two augmentation layers that run inside the training step: RandomShift and RandomAffine.

Add your own: write a function `my_model(input_shape, num_classes, ...)` that returns a
keras.Model, add it to MODELS (and, if it trains differently, to TRAINING), then run
`python main.py --model my_model`.
"""
import inspect

import keras
import numpy as np
from keras import layers, ops, regularizers


@keras.saving.register_keras_serializable(package="improve_your_network")
class RandomShift(layers.Layer):
    """Shift each training image by up to `factor` of its height and width, at random.

    The Spark tutorial's ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1),
    done on the device inside the training step. Like that generator (Keras 2 resampled
    with order=0), it moves images by whole pixels, so they stay as sharp as the test
    images. Pixels shifted in from outside are 0 (the background).
    """

    def __init__(self, factor=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.factor, self.seed = factor, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        dy, dx = (ops.round(self.factor * size * keras.random.uniform(  # nearest whole pixel
            (batch,), -1, 1, seed=self.seed_generator)) for size in (height, width))
        return self.move(images, dy, dx)

    def move(self, images, dy, dx):
        """Each image moved down by its dy and right by its dx pixels (whole numbers)."""
        zeros, ones = ops.zeros_like(dx), ops.ones_like(dx)
        # Output pixel (x, y) = (column, row) reads input pixel (x - dx, y - dy).
        transform = ops.stack([ones, zeros, -dx, zeros, ones, -dy, zeros, zeros], axis=1)
        return ops.image.affine_transform(images, transform, interpolation="nearest", fill_mode="constant")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "seed": self.seed}


@keras.saving.register_keras_serializable(package="improve_your_network")
class RandomAffine(layers.Layer):
    """Rotate, shear and zoom each training image at random, as Keras 1's ImageDataGenerator did.

    "Beating MNIST"'s ImageDataGenerator(rotation_range=10, shear_range=0.1, zoom_range=0.1),
    done on the device inside the training step. rotation: degrees; shear: radians; zoom:
    each axis is scaled by a factor in [1 - zoom, 1 + zoom], drawn separately. One affine
    map per image does all three (see affine_transform), rather than a chain of
    keras.layers.RandomRotation, RandomShear and RandomZoom.
    """

    def __init__(self, rotation=10, shear=0.1, zoom=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.shear, self.zoom, self.seed = rotation, shear, zoom, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        def uniform(low, high):  # one value per image
            return keras.random.uniform((ops.shape(images)[0], 1), low, high, seed=self.seed_generator)
        angle = uniform(-1.0, 1.0) * self.rotation * np.pi / 180
        shear = uniform(-self.shear, self.shear)
        zoom_rows, zoom_cols = uniform(1 - self.zoom, 1 + self.zoom), uniform(1 - self.zoom, 1 + self.zoom)
        return self.warp(images, angle, shear, zoom_rows, zoom_cols)

    def warp(self, images, angle, shear, zoom_rows, zoom_cols):
        return affine_transform(images, angle, shear, zoom_rows, zoom_cols)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "shear": self.shear,
                "zoom": self.zoom, "seed": self.seed}


def affine_transform(images, angle, shear, zoom_rows, zoom_cols):
    """Each image rotated by `angle` and sheared by `shear` (radians), its rows and columns
    scaled by `zoom_rows` and `zoom_cols`, about its centre; each argument has shape (batch, 1).

    The map (rotation @ shear @ zoom, composed as Keras 1 did) gives the source of every
    output pixel, which keras.ops.image.affine_transform reads by bilinear interpolation
    (Keras 1 took the nearest pixel). Pixels from outside the image take the nearest edge
    pixel (Keras 1's default fill_mode="nearest"), which is right for standardised images
    too. A zoom factor above 1 reads a larger area: the digit shrinks.
    """
    centre_row, centre_col = (images.shape[1] - 1) / 2, (images.shape[2] - 1) / 2
    # Output pixel (x, y) = (column, row) reads input pixel (a0 x + a1 y + a2, b0 x + b1 y + b2).
    a0, a1 = zoom_cols * ops.cos(angle + shear), zoom_rows * ops.sin(angle)
    b0, b1 = -zoom_cols * ops.sin(angle + shear), zoom_rows * ops.cos(angle)
    a2, b2 = centre_col - a0 * centre_col - a1 * centre_row, centre_row - b0 * centre_col - b1 * centre_row
    transform = ops.concatenate([a0, a1, a2, b0, b1, b2, ops.zeros_like(a0), ops.zeros_like(a0)], axis=1)
    return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="nearest")


ACTIVATION_LAYERS = {"leaky_relu": layers.LeakyReLU, "prelu": layers.PReLU, "elu": layers.ELU}


def activation_layer(name, **options):
    """A hidden layer's nonlinearity as a layer, by name: one of ACTIVATION_LAYERS (leaky_relu:
    slope 0.3 unless `negative_slope` says otherwise; prelu: learned slopes; elu: alpha 1),
    or any Keras activation ("relu", "sigmoid", ...). `options` go to the layer."""
    if name in ACTIVATION_LAYERS:
        return ACTIVATION_LAYERS[name](**options)
    return layers.Activation(name, **options)


def averaged(members, name="averaged"):
    """One model whose prediction is the mean of the trained `members`' predictions (an ensemble).

    The members are renamed member_1, member_2, ...: names must be unique within a model.
    """
    for number, member in enumerate(members, 1):
        member.name = f"member_{number}"
    inp = keras.Input(shape=members[0].input_shape[1:])
    out = layers.Average()([member(inp) for member in members])
    return keras.Model(inputs=inp, outputs=out, name=name)


def l42_mlp(input_shape, num_classes, hidden_size=128, activation="sigmoid", batch_norm=False, dropout=0.0,
            l2=0.0):
    """The L42 starter pack's baseline (seed 001): 784-128-128-10, sigmoid, no regularisation.

    The practical publishes no accuracy; it is the weak start you are asked to improve. The
    options are its hints, for a search (l42_mlp_space): another hidden activation, batch
    norm before each hidden activation, dropout after it, an L2 penalty on every kernel.
    """
    regularizer = regularizers.L2(l2) if l2 else None
    inp = keras.Input(shape=input_shape)
    x = layers.Flatten()(inp)
    for _ in range(2):
        if batch_norm:
            x = layers.Dense(hidden_size, use_bias=False, kernel_regularizer=regularizer)(x)  # batch norm adds the bias
            x = layers.Activation(activation)(layers.BatchNormalization()(x))
        else:
            x = layers.Dense(hidden_size, activation=activation, kernel_regularizer=regularizer)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    out = layers.Dense(num_classes, activation="softmax", kernel_regularizer=regularizer)(x)
    return keras.Model(inputs=inp, outputs=out, name="l42_mlp")


def spark_baseline(input_shape, num_classes, conv_depth=32, hidden_size=128):
    """Cambridge Spark's baseline CNN (seed 000): Conv32-Conv32-Pool-Dropout-Dense128-Dropout.

    Published: 99.12% MNIST test accuracy after 12 epochs of Adam, batch 128.
    """
    inp = keras.Input(shape=input_shape)
    conv_1 = layers.Conv2D(conv_depth, (3, 3), padding="same", activation="relu")(inp)
    conv_2 = layers.Conv2D(conv_depth, (3, 3), padding="same", activation="relu")(conv_1)
    pool_1 = layers.MaxPooling2D(pool_size=(2, 2))(conv_2)
    drop_1 = layers.Dropout(0.25)(pool_1)
    flat = layers.Flatten()(drop_1)
    hidden = layers.Dense(hidden_size, activation="relu")(flat)
    drop = layers.Dropout(0.5)(hidden)
    out = layers.Dense(num_classes, activation="softmax")(drop)
    return keras.Model(inputs=inp, outputs=out, name="spark_baseline")


def spark_finetuned(input_shape, num_classes, l2_lambda=1e-4, he_init=True, batch_norm=True,
                    augment=True, ensemble=3, conv_depth=32, hidden_size=128):
    """Cambridge Spark's fine-tuned CNN (seed 000): the baseline plus each technique below.

    l2_lambda: L2 penalty on every kernel (0 turns it off).
    he_init: He-uniform init for ReLU layers (else Keras's default, Glorot-uniform).
    batch_norm: batch norm on the input and after every hidden layer.
    augment: random shifts of up to 10% of the width and height (training only).
    ensemble: how many copies of the network are trained side by side and averaged.
    With early stopping (patience 5, at most 50 epochs), published: 99.47% MNIST test accuracy.
    """
    regularizer = regularizers.L2(l2_lambda) if l2_lambda else None
    relu_init = "he_uniform" if he_init else "glorot_uniform"
    def normalise(x):
        return layers.BatchNormalization()(x) if batch_norm else x

    def conv(x):
        return layers.Conv2D(conv_depth, (3, 3), padding="same", activation="relu",
                             kernel_initializer=relu_init, kernel_regularizer=regularizer)(x)

    inp = keras.Input(shape=input_shape)
    shifted = RandomShift(0.1)(inp) if augment else inp
    inp_norm = normalise(shifted)
    outs = []  # the list of ensemble outputs
    for _ in range(ensemble):
        conv_1 = normalise(conv(inp_norm))
        conv_2 = normalise(conv(conv_1))
        pool_1 = layers.MaxPooling2D(pool_size=(2, 2))(conv_2)
        drop_1 = layers.Dropout(0.25)(pool_1)
        flat = layers.Flatten()(drop_1)
        hidden = layers.Dense(hidden_size, activation="relu", kernel_initializer=relu_init,
                              kernel_regularizer=regularizer)(flat)
        drop = layers.Dropout(0.5)(normalise(hidden))
        outs.append(layers.Dense(num_classes, activation="softmax", kernel_initializer="glorot_uniform",
                                 kernel_regularizer=regularizer)(drop))
    out = layers.Average()(outs) if ensemble > 1 else outs[0]  # average the members' predictions
    return keras.Model(inputs=inp, outputs=out, name="spark_finetuned")


def fast_cnn(input_shape, num_classes, width=32, augment=True, batch_norm=True):
    """This project's fast recipe (from no tutorial): the most accuracy per second of training.

    A small VGG-style CNN: 3x3 convolutions, each followed by batch norm, with max pooling
    halving the image three times, and the Spark tutorial's random shifts. Where the time
    goes: the first convolution is narrow because it sees 28x28 pixels; the widths double as
    the image shrinks. TRAINING adds a one-cycle learning rate and label smoothing.
    batch_norm=False (plain ReLU convolutions) is for the ablation in experiments/fast.py.
    Its test accuracy and time to accuracy: `python -m experiments speed` (results/speed-*.md).
    """
    def conv_bn(x, filters):
        if not batch_norm:
            return layers.Conv2D(filters, (3, 3), padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, (3, 3), padding="same", use_bias=False)(x)  # batch norm adds the bias
        return layers.ReLU()(layers.BatchNormalization()(x))

    inp = keras.Input(shape=input_shape)
    x = RandomShift(0.1)(inp) if augment else inp
    x = layers.MaxPooling2D()(conv_bn(x, width))  # 28x28 -> 14x14
    x = layers.MaxPooling2D()(conv_bn(conv_bn(x, 2 * width), 2 * width))  # -> 7x7
    x = layers.MaxPooling2D()(conv_bn(x, 4 * width))  # -> 3x3
    x = layers.Flatten()(x)
    out = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs=inp, outputs=out, name="fast_cnn")


# The augmentations that suit each kind of image, for best_cnn: digits and letters keep their
# meaning under small rotations, zooms and shifts; clothes also under a left-right flip, and
# random erasing (a blanked rectangle) teaches a network to use the whole garment. Letters with
# random erasing too ("glyphs+erasing") was a candidate for notMNIST, dropped (results/bestchoices.md).
AUGMENTATIONS = ["none", "shifts", "glyphs", "glyphs+erasing", "clothes"]


def augmentation(images, kind):
    """The training-time augmentation layers of best_cnn, applied to `images` (a Keras tensor)."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation {kind!r}: choose one of {', '.join(AUGMENTATIONS)}.")
    if kind.startswith("glyphs"):
        images = RandomAffine(rotation=10, shear=0.0, zoom=0.1)(images)
    if kind == "clothes":
        images = layers.RandomFlip("horizontal")(images)
    if kind != "none":
        images = RandomShift(0.1)(images)
    if kind in ("clothes", "glyphs+erasing"):  # a black rectangle of 2-33% of the image, on half the images
        images = layers.RandomErasing(factor=(0.5, 0.5), fill_value=0.0, value_range=(0, 1))(images)
    return images


def best_cnn(input_shape, num_classes, width=32, depth=2, augment="glyphs", dropout=0.0):
    """This project's strongest model: a VGG-style CNN, 3x3 convolutions each followed by batch norm.

    Three stages at 28x28, 14x14 and 7x7 pixels, each of `depth` convolutions of width, 2x width
    and 4x width channels, max pooling between them; global average pooling, `dropout`, and the
    classifier. augment: one of AUGMENTATIONS (see augmentation). Each dataset's best recipe has
    a name in MODELS and TRAINING: `python main.py --dataset mnist --model mnist_best`.
    """
    def conv_bn(x, filters):
        x = layers.Conv2D(filters, (3, 3), padding="same", use_bias=False)(x)  # batch norm adds the bias
        return layers.ReLU()(layers.BatchNormalization()(x))

    inp = keras.Input(shape=input_shape)
    x = augmentation(inp, augment)
    for stage in range(3):
        if stage:
            x = layers.MaxPooling2D()(x)
        for _ in range(depth):
            x = conv_bn(x, width * 2 ** stage)
    x = layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    out = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs=inp, outputs=out, name="best_cnn")


def fashion_best(input_shape, num_classes, width=32, depth=2, dropout=0.0):
    """best_cnn with the augmentations that suit clothes: flips, shifts and random erasing."""
    return best_cnn(input_shape, num_classes, width, depth, augment="clothes", dropout=dropout)


# Search spaces for `python -m experiments tune` (KerasTuner): per model, a function of a
# keras_tuner.HyperParameters `hp` that declares what to search and returns the builder's options
# and the train.Training settings of one point of the space. Anything not searched stays as in
# TRAINING. Add one for your own model the same way.

def l42_mlp_space(hp):
    """The L42 practical's hints for its starter MLP (the starter pack's own settings among them)."""
    options = dict(hidden_size=hp.Choice("hidden_size", [128, 256, 512]),
                   activation=hp.Choice("activation", ["sigmoid", "relu", "elu", "tanh"]),
                   batch_norm=hp.Boolean("batch_norm"),
                   dropout=hp.Choice("dropout", [0.0, 0.2, 0.5]),
                   l2=hp.Choice("l2", [0.0, 1e-5, 1e-4, 1e-3]))
    training = dict(optimizer=hp.Choice("optimizer", ["sgd", "adam", "rmsprop"]),
                    learning_rate=hp.Float("learning_rate", 1e-4, 1e-1, sampling="log"))
    return options, training


def fast_cnn_space(hp):
    """fast_cnn's width and the settings its recipe fixed by hand (see experiments/fastchoices.py)."""
    options = dict(width=hp.Choice("width", [16, 32, 48]))
    training = dict(learning_rate=hp.Float("learning_rate", 1e-3, 2e-2, sampling="log"),
                    label_smoothing=hp.Choice("label_smoothing", [0.0, 0.05, 0.1, 0.2]),
                    epochs=hp.Int("epochs", 2, 8))
    return options, training


MODELS = {
    "l42_mlp": l42_mlp,
    "spark_baseline": spark_baseline,
    "spark_finetuned": spark_finetuned,
    "fast_cnn": fast_cnn,
    "best_cnn": best_cnn,
    # The best recipes (python -m experiments best, results/best.md): best_cnn with the augmentations
    # that suit each dataset, and each dataset's schedule in TRAINING.
    "mnist_best": best_cnn,
    "notmnist_best": best_cnn,
    "fashion_best": fashion_best,
}

# fast_cnn's recipe, trained longer (experiments/bestchoices.py).
BEST_CNN_TRAINING = dict(optimizer="adam", learning_rate=0.005, batch_size=128, epochs=30, one_cycle=True,
                         label_smoothing=0.1)

# How each tutorial trained its model: train.Training's settings, where not its defaults (Adam,
# learning rate 0.001, batch 128, 10 epochs, no early stopping). main.py's flags override any of
# them; `patience` turns on early stopping on the validation loss, keeping the best weights.
TRAINING = {
    "l42_mlp": dict(optimizer="sgd", learning_rate=0.01, batch_size=128, epochs=20),
    "spark_baseline": dict(optimizer="adam", learning_rate=0.001, batch_size=128, epochs=12),
    "spark_finetuned": dict(optimizer="adam", learning_rate=0.001, batch_size=128, epochs=50, patience=5),
    # one_cycle: the learning rate warms up to its peak, then anneals to 0 by the last epoch.
    "fast_cnn": dict(optimizer="adam", learning_rate=0.005, batch_size=128, epochs=6, one_cycle=True,
                     label_smoothing=0.1),
    "best_cnn": BEST_CNN_TRAINING,
    # Fixed in advance, to keep a run of 55,000 images under 45 minutes on a 2-core CPU (MNIST's
    # 20 epochs took 29-33 minutes there, so Fashion-MNIST's planned 30 would not have fitted).
    "mnist_best": {**BEST_CNN_TRAINING, "epochs": 20},
    "notmnist_best": BEST_CNN_TRAINING,
    "fashion_best": {**BEST_CNN_TRAINING, "epochs": 20},
}

SEARCH_SPACES = {"l42_mlp": l42_mlp_space, "fast_cnn": fast_cnn_space}


def get_model(model, input_shape, num_classes, **hyperparameters):
    """Build a model: a name in MODELS, or a builder function; `hyperparameters` are its options."""
    if isinstance(model, str) and model not in MODELS:
        raise ValueError(f"Unknown model {model!r}: choose one of {', '.join(MODELS)}.")
    builder = MODELS.get(model) if isinstance(model, str) else model
    unknown = sorted(set(hyperparameters) - options(builder))
    if unknown:
        raise ValueError(f"Model {builder.__name__!r} has no option {', '.join(unknown)}.")
    return builder(input_shape, num_classes, **hyperparameters)


def options(model):
    """The keyword arguments that a model's builder (or registered name) accepts."""
    builder = MODELS[model] if isinstance(model, str) else model
    return set(inspect.signature(builder).parameters) - {"input_shape", "num_classes"}
