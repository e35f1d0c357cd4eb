"""Classify your own image files with a trained model.

    python main.py --dataset mnist --model l42_mlp --save models/
    python predict.py models/l42_mlp.keras my_digit.png photo_of_a_seven.jpg
    python predict.py docs/examples/notmnist-l42_mlp.keras letter.png

A model saved by main.py --save knows its dataset, and so the names of its classes (digits,
letters or clothes); --dataset is for older files, which say nothing (digits are assumed).

Any size, colour or greyscale, light-on-dark or dark-on-light: each image is turned
into what the model was trained on, a 28x28 greyscale image of a light glyph on a dark
background with pixels in [0, 1], framed as its dataset frames them: for MNIST, the digit
scaled into a 20x20 box, centred by its centre of mass; for notMNIST and Fashion-MNIST, the
whole image. Prints the three most likely classes per file.
"""
import argparse
import os
import sys

import quiet

quiet.import_keras()  # before any other module imports it: TensorFlow's start-up notes stay off the terminal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

import model  # noqa: F401  registers the custom RandomShift layer, so saved models load
from data import CLASS_NAMES, IMAGE_SIZE
from train import saved_dataset

TOP = 3  # classes printed per image
BORDER = 2  # pixels around the edge that tell the background's colour
DIGIT_BOX = 20  # MNIST's digits fit a 20x20 box, placed with their centre of mass at the frame's centre
INK = 0.2  # of the brightest pixel: what is darker is background, when finding a digit's box


class ImageReadError(Exception):
    """An image file could not be read; the message names the file and says why."""


def load_image(path, invert="auto", dataset=None):
    """Read an image file as the model's input: shape (28, 28, 1), float32 in [0, 1].

    invert: "auto" (when the border is light), "yes" or "no".
    dataset: "mnist" frames the digit as MNIST does (frame_digit); otherwise the whole image
    is padded to a square and resized.
    """
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)  # phone photos: upright, as the eye sees them
            pixels = greyscale(image)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"{path}: not a readable image ({error})") from None
    if invert == "yes" or (invert == "auto" and light_background(pixels)):
        pixels = 255 - pixels  # the datasets are light glyphs on a dark background
    framed = frame_digit(pixels) if dataset == "mnist" else resize(pixels)
    return (framed / 255).astype("float32")[..., None]  # as data.py scales uint8 pixels


def greyscale(image):
    """The image as a float array of grey levels 0-255. Where the image has transparency,
    the opacity is the ink: a glyph drawn on a transparent background, whatever its colour."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA").getchannel("A"), dtype="float32")
        if alpha.min() < 255:
            return alpha
    if image.mode.startswith("I;16"):  # 16-bit greyscale: convert("L") would clip it, not scale it
        return np.asarray(image, dtype="float32") / 257
    return np.asarray(image.convert("L"), dtype="float32")


def light_background(pixels):
    """True when the pixels around the border are mostly light: dark ink on light paper.

    Right for a glyph with a margin round it (a photo, a drawing, every MNIST image); wrong
    for a glyph so big that it covers most of the border, as a quarter of notMNIST's do.
    """
    return np.median(border(pixels)) > 127.5


def border(pixels):
    """The pixels within BORDER of the edge."""
    return np.concatenate([pixels[:BORDER].ravel(), pixels[-BORDER:].ravel(),
                           pixels[:, :BORDER].ravel(), pixels[:, -BORDER:].ravel()])


def frame_digit(pixels):
    """The digit framed as MNIST's were: its box (the pixels at least INK of the brightest)
    scaled to fit DIGIT_BOX x DIGIT_BOX, keeping its aspect, then placed in the 28x28 frame
    with its centre of mass at the centre, as near as the frame allows. A grey background (paper
    in a photo) becomes black first, and the brightest ink full white, as MNIST's strokes are:
    outside the box the frame is black too."""
    pixels = np.clip(pixels - np.median(border(pixels)), 0, None)
    if pixels.max() == 0:  # a blank image: nothing to frame
        return resize(pixels)
    pixels *= 255 / pixels.max()  # MNIST's strokes are full white: so is grey pencil or blue ink here
    rows, cols = np.nonzero(pixels >= INK * pixels.max())
    digit = resize(pixels[rows.min():rows.max() + 1, cols.min():cols.max() + 1], DIGIT_BOX)
    centre_row, centre_col = (np.indices(digit.shape) * digit).sum(axis=(1, 2)) / digit.sum()
    # MNIST's centres of mass sit at pixel (14, 14), counting from 0
    top, left = (int(np.clip(round(IMAGE_SIZE / 2 - centre), 0, IMAGE_SIZE - DIGIT_BOX))
                 for centre in (centre_row, centre_col))
    frame = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype="float32")
    frame[top:top + DIGIT_BOX, left:left + DIGIT_BOX] = digit
    return frame


def resize(pixels, size=IMAGE_SIZE):
    """Pad to a square with the (dark) background colour, keeping the aspect, then resize to size x size."""
    height, width = pixels.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype="float32")
    top, left = (side - height) // 2, (side - width) // 2
    square[top:top + height, left:left + width] = pixels
    # Shrinking averages the pixels each new pixel covers (as a camera sensor would); growing interpolates.
    resample = Image.Resampling.BOX if side > size else Image.Resampling.BILINEAR
    resized = Image.fromarray(square).resize((size, size), resample)
    return np.clip(np.asarray(resized), 0, 255)


def top_classes(probabilities, class_names, top=TOP):
    """[(class name, probability), ...], the most likely first."""
    best = np.argsort(-probabilities, kind="stable")[:top]
    return [(class_names[i], float(probabilities[i])) for i in best]


def predict_files(keras_model, paths, dataset, top=TOP, invert="auto"):
    """Classify each file with a model trained on `dataset`. Returns ({path: top classes},
    {path: error message}) in input order; a file that cannot be read gets an error and never
    stops the others."""
    class_names = CLASS_NAMES[dataset]
    images, errors = {}, {}
    for path in paths:
        try:
            images[path] = load_image(path, invert, dataset)
        except ImageReadError as error:
            errors[path] = str(error)
    answers = {}
    if images:  # one batch for all the readable files
        probabilities = keras_model.predict(np.stack(list(images.values())), verbose=0)
        answers = {path: top_classes(p, class_names, top) for path, p in zip(images, probabilities)}
    return answers, errors


def load_model(path, dataset=None):
    """Load a saved .keras model and the name of the dataset it was trained on; exit with a
    message if it cannot be used. dataset: what --dataset says, if anything."""
    import keras
    if not os.path.isfile(path):
        sys.exit(f"error: model file {path} not found (train and save one with: "
                 f"python main.py --save DIR, then pass DIR/NAME.keras)")
    try:
        keras_model = keras.models.load_model(path, compile=False)  # predicting needs no loss or metrics
        trained_on = saved_dataset(path)
    except Exception as error:  # not a zip, not a Keras model, an unknown layer, ...
        sys.exit(f"error: cannot load the model {path}: {error}")
    if trained_on and dataset and dataset != trained_on:
        sys.exit(f"error: the model {path} was trained on {trained_on}, not {dataset}: leave out --dataset")
    if not (trained_on or dataset):
        print(f"warning: the model {path} does not say which dataset it was trained on (it was saved before "
              f"models recorded it): its classes are taken to be digits; --dataset names them", file=sys.stderr)
    name = trained_on or dataset or "mnist"
    outputs = keras_model.output_shape[-1]
    if outputs != len(CLASS_NAMES[name]):
        sys.exit(f"error: the model {path} has {outputs} outputs, but {name} has {len(CLASS_NAMES[name])} classes")
    return keras_model, name


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL.keras", help="a model saved by main.py --save")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--dataset", choices=sorted(CLASS_NAMES),
                        help="the dataset the model was trained on, for the class names: needed only for a "
                        "model saved without it (default: the model's own; else mnist)")
    parser.add_argument("--invert", choices=["auto", "yes", "no"], default="auto",
                        help="make dark-on-light images light-on-dark: 'auto' does it when the border is "
                        "light, which misjudges glyphs that fill the whole frame, like many notMNIST "
                        "letters: then say 'no' (default: auto)")
    args = parser.parse_args(argv)

    keras_model, dataset = load_model(args.model, args.dataset)
    answers, errors = predict_files(keras_model, args.images, dataset, invert=args.invert)
    for path in args.images:
        if path in answers:
            print(f"{path}: " + ", ".join(f"{name} {p:.1%}" for name, p in answers[path]))
        else:
            print(f"error: {errors[path]}", file=sys.stderr)
    if errors:
        sys.exit(f"error: {len(errors)} of {len(args.images)} files could not be read")


if __name__ == "__main__":
    main()
