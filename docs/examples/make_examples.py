"""Make the example images and models in docs/examples/ (README.md there has the commands).

    python docs/examples/make_examples.py mnist /tmp/ex-models/mnist/l42_mlp.keras
    python docs/examples/make_examples.py notmnist /tmp/ex-models/notmnist/l42_mlp.keras

For a model trained by main.py --save, this writes next to this file:
  DATASET-l42_mlp.keras    the model without its optimizer state (a third of the size;
                           predicting needs only the weights), which names its dataset
  DATASET-LABEL*.png       real test images, as they are and in disguise (see `variants`)

Which test images: in test-set order, the first ones of EXAMPLES_PER_DATASET different
classes that the model classifies correctly as they are (28x28, from the dataset) and whose
border is dark (predict.py's automatic inversion needs a background at the border). The
disguised versions are not looked at when choosing: tests/test_predict.py checks that
predict.py gives them the same answer.
"""
import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository root: data.py, model.py, predict.py

import keras
import numpy as np
from PIL import Image

import predict
from data import load_dataset
from train import save_model

EXAMPLES_PER_DATASET = 2
SCALE = 4  # 28x28 -> 112x112
PAPER, INK = np.array([245, 240, 225]), np.array([30, 40, 110])  # off-white paper, dark blue ink


def variants(image):
    """One uint8 28x28 test image (light on dark) in disguise: name suffix -> pixels."""
    big = image.repeat(SCALE, 0).repeat(SCALE, 1)
    ink = big[..., None] / 255  # 0 = paper, 1 = ink
    cut = 0  # how many columns are empty at both sides
    while cut < 14 and not image[:, cut].any() and not image[:, -1 - cut].any():
        cut += 1
    found = {
        "": image,
        "-inverted": 255 - image,
        f"-{SCALE * 28}px": big,
        f"-{SCALE * 28}px-inverted-rgb": np.round(PAPER * (1 - ink) + INK * ink).astype(np.uint8),
    }
    if cut:  # crop the empty columns off: a tall image, that predict.py pads back to a square
        found[f"-tall-{SCALE * 28}x{SCALE * (28 - 2 * cut)}px"] = big[:, SCALE * cut:SCALE * (28 - cut)]
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["mnist", "fashion", "notmnist"])
    parser.add_argument("model", help="a model saved by main.py --save")
    parser.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "../shared/datasets"))
    args = parser.parse_args()

    trained = keras.models.load_model(args.model)
    slim = keras.Model(trained.inputs, trained.outputs, name=trained.name)  # same layers, not compiled:
    # saved without the optimizer's state (clone_model would keep it, compiled), with the dataset's name
    name = f"{args.dataset}-{trained.name}.keras"
    save_model(slim, HERE / name, args.dataset)
    print(f"wrote {name} ({(HERE / name).stat().st_size:,} bytes)")

    dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    predicted = slim.predict(dataset.x_test, verbose=0).argmax(-1)
    chosen = {}
    for i, (x, label) in enumerate(zip(dataset.x_test, dataset.y_test)):
        image = np.round(x[..., 0] * 255).astype(np.uint8)
        if predicted[i] == label and label not in chosen and not predict.light_background(image):
            chosen[label] = (i, image)
        if len(chosen) == EXAMPLES_PER_DATASET:
            break
    for label, (i, image) in chosen.items():
        for suffix, pixels in variants(image).items():
            fname = f"{args.dataset}-{dataset.class_names[label]}{suffix}.png"
            Image.fromarray(pixels).save(HERE / fname)
            print(f"wrote {fname} (test image {i}, {pixels.shape[1]}x{pixels.shape[0]})")


if __name__ == "__main__":
    main()
