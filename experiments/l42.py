"""Cambridge L42 practical 2 on notMNIST: the starter-pack MLP, then the practical's hints (seed 001).

The practical hands out a 784-128-128-10 sigmoid MLP trained by plain SGD (lr 0.01,
batch 128, 20 epochs) and asks for a better network, listing what to try: ReLU,
the adaptive optimisers Adam and RMSprop, a CNN (convolution and max-pooling),
dropout, batch normalisation, a better training schedule, L2 regularisation, He
initialisation, and the advanced activations LeakyReLU, PReLU and ELU. This ladder
tries them in that order, each rung adding one hint to the rung before it (the
RMSprop and activation rungs are side-by-side alternatives, not additions). The
practical publishes no accuracy for any model, so the published column is empty.

The last step is the practical's ending: commit to one model using validation
accuracy only, then score it on the test split that no choice ever looked at
(the practical's "fully hidden" test set).

Honesty:
- data.load_dataset("notmnist") holds out a fixed 10% of the glyphs as the test set;
  the validation split (10% of the rest, seeded) is carved from the training images.
- Every model is trained once per seed and its test set scored once, after training.
  The ladder rows show those test accuracies for reading; no choice uses them.
- Early stopping and learning-rate annealing watch the validation loss; the final
  step picks its model by validation accuracy (ties: the lower validation loss),
  among the rungs above, trained with the same seed and reused, not retrained.
- The practical prints no number, so no published number is compared with ours.
"""
import keras
from keras import layers, regularizers

from experiments.runner import MOVING_BATCH_NORM, Step, Trial, run_step, settings_for
from model import activation_layer

DATASET = "notmnist"
EPOCHS = 20  # the starter pack's schedule, kept for every rung but the schedule rung
SGD = dict(optimizer="sgd", learning_rate=0.01, batch_size=128, epochs=EPOCHS)  # model.TRAINING["l42_mlp"]
ADAM = dict(MOVING_BATCH_NORM, optimizer="adam", learning_rate=0.001, batch_size=128, epochs=EPOCHS)  # Keras's default rate
RMSPROP = dict(optimizer="rmsprop", learning_rate=0.001, batch_size=128, epochs=EPOCHS)  # Keras's default rate
L2 = 1e-4
PER_CHANNEL = dict(shared_axes=[1, 2])  # a conv layer's PReLU: one slope per channel, shared over height and width


def anneal():
    """Halve the learning rate when the validation loss has not improved for 2 epochs."""
    return keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-5)


# At most 50 epochs; early stopping on the validation loss (patience 5, best weights kept).
SCHEDULE = dict(ADAM, epochs=50, patience=5, callbacks=[anneal])


def mlp(input_shape, num_classes, activation="relu", hidden_size=128):
    """The starter pack's 784-128-128-10 MLP with another hidden activation (the hint: ReLU)."""
    inp = keras.Input(shape=input_shape)
    flat = layers.Flatten()(inp)
    hidden_1 = layers.Dense(hidden_size, activation=activation)(flat)
    hidden_2 = layers.Dense(hidden_size, activation=activation)(hidden_1)
    out = layers.Dense(num_classes, activation="softmax")(hidden_2)
    return keras.Model(inputs=inp, outputs=out, name="l42_mlp_" + activation)


def cnn(input_shape, num_classes, activation="relu", dropout=False, batch_norm=False, l2=0.0,
        init="glorot_uniform", conv_depth=32, hidden_size=128):
    """A small CNN: Conv32-Pool-Conv64-Pool-Dense128, each hint switchable.

    activation: relu, elu, leaky_relu or prelu (the practical's advanced activations).
    dropout: Dropout(0.25) after each pooling layer and Dropout(0.5) after the dense layer.
    batch_norm: BatchNormalization between each hidden layer and its activation (Ioffe & Szegedy).
    l2: L2 penalty on every kernel (Keras adds l2 * sum(w**2), i.e. the practical's
        lambda/2 * ||w||^2 with lambda = 2 * l2); biases are not penalised.
    init: the kernels' initialiser, e.g. "he_uniform" (Keras's default is Glorot-uniform).
    """
    regularizer = regularizers.L2(l2) if l2 else None

    def hidden(layer, x, conv):  # layer -> [batch norm] -> activation
        x = layer(x)
        if batch_norm:
            x = layers.BatchNormalization()(x)
        # PReLU: one learned slope per channel in conv layers (He et al., 2015), rather than Keras's
        # default of one per pixel and channel; one per neuron in dense layers.
        return activation_layer(activation, **(PER_CHANNEL if conv and activation == "prelu" else {}))(x)

    def conv_block(x, depth):  # convolution, activation, 2x2 max-pooling, [dropout]
        conv = layers.Conv2D(depth, (3, 3), padding="same", use_bias=not batch_norm,
                             kernel_initializer=init, kernel_regularizer=regularizer)
        pool = layers.MaxPooling2D(pool_size=(2, 2))(hidden(conv, x, conv=True))
        return layers.Dropout(0.25)(pool) if dropout else pool

    inp = keras.Input(shape=input_shape)
    block_1 = conv_block(inp, conv_depth)  # 28x28 -> 14x14
    block_2 = conv_block(block_1, 2 * conv_depth)  # 14x14 -> 7x7
    flat = layers.Flatten()(block_2)
    dense = layers.Dense(hidden_size, use_bias=not batch_norm, kernel_initializer=init,
                         kernel_regularizer=regularizer)
    hidden_1 = hidden(dense, flat, conv=False)
    drop = layers.Dropout(0.5)(hidden_1) if dropout else hidden_1
    out = layers.Dense(num_classes, activation="softmax", kernel_regularizer=regularizer)(drop)
    return keras.Model(inputs=inp, outputs=out, name="l42_cnn_" + activation)


def choose_by_validation(trial):
    """Pick the rung with the best validation accuracy for this seed; report its test score only.

    Ties go to the lower validation loss, then to the earlier rung. A rung this command has
    already run (Trial.earlier) is not trained again; any other is trained here, as the
    runner would. Only validation numbers decide.
    """
    candidates = STEPS[:STEPS.index(trial.step)]
    scored = []
    for number, candidate in enumerate(candidates):
        if candidate.name in trial.earlier:
            result = trial.earlier[candidate.name]
        else:
            rung = Trial(candidate, trial.dataset, settings_for(candidate, trial.quick), trial.seed, trial.quick,
                         trial.verbose)
            result = run_step(rung)[1]
        scored.append((result["val_accuracy"], -result["val_loss"], -number, candidate.name, result))
    val_accuracy, _, _, chosen, result = max(scored, key=lambda entry: entry[:3])
    return {**result, "name": f"best by validation: {chosen}", "chosen": chosen,
            "candidates_val_accuracy": {entry[3]: entry[0] for entry in scored},
            "note": f"seed {trial.seed}: picked {chosen} (validation {val_accuracy:.2%})"}


CNN_FULL = dict(dropout=True, batch_norm=True, l2=L2, init="he_uniform")

STEPS = [
    Step("starter pack: sigmoid MLP, SGD", "l42_mlp", training=SGD,
         note="784-128-128-10, SGD lr 0.01, batch 128, 20 epochs: the practical's baseline"),
    Step("+ ReLU (MLP, SGD)", mlp, hyperparameters=dict(activation="relu"), training=SGD),
    Step("+ Adam (MLP, ReLU)", mlp, hyperparameters=dict(activation="relu"), training=ADAM, note="lr 0.001"),
    Step("RMSprop instead of Adam (MLP, ReLU)", mlp, hyperparameters=dict(activation="relu"),
         training=RMSPROP, note="lr 0.001; an alternative to the rung above"),
    Step("CNN (ReLU, Adam)", cnn, training=ADAM, note="Conv32-Pool-Conv64-Pool-Dense128"),
    Step("+ dropout", cnn, hyperparameters=dict(dropout=True), training=ADAM,
         note="0.25 after each pooling, 0.5 after the dense layer"),
    Step("+ batch norm", cnn, hyperparameters=dict(dropout=True, batch_norm=True), training=ADAM),
    Step("+ L2 (1e-4)", cnn, hyperparameters=dict(dropout=True, batch_norm=True, l2=L2), training=ADAM,
         note="on every kernel"),
    Step("+ He init", cnn, hyperparameters=CNN_FULL, training=ADAM,
         note="he_uniform instead of Keras's default glorot_uniform"),
    Step("LeakyReLU instead of ReLU", cnn, hyperparameters=dict(CNN_FULL, activation="leaky_relu"),
         training=ADAM, note="slope 0.3 (Keras's default)"),
    Step("PReLU instead of ReLU", cnn, hyperparameters=dict(CNN_FULL, activation="prelu"),
         training=ADAM, note="one learned slope per channel in conv layers"),
    Step("ELU instead of ReLU", cnn, hyperparameters=dict(CNN_FULL, activation="elu"),
         training=ADAM),
    Step("+ early stopping & LR annealing (ReLU)", cnn, hyperparameters=CNN_FULL, training=SCHEDULE,
         note="at most 50 epochs; both watch the validation loss: stop after 5 epochs without improvement "
              "(best weights kept), halve the rate after 2"),
    Step("best by validation, on the hidden test set", None, run=choose_by_validation,
         note="the rung above with the best validation accuracy, chosen on validation only, then its one "
              "test score; seconds: the choice, plus training any rung this command did not run above"),
]
