"""Does predict.py undo a disguise? MNIST test digits written as a user's image files would be.

    python main.py --model fast_cnn --save models/
    python docs/examples/check_predict.py models/fast_cnn.keras --out results/predict-check.json

Each of the first IMAGES test digits is written as a PNG file: cropped to its ink (the box of
its nonzero pixels), enlarged 4x with smooth (bilinear) interpolation, and drawn in dark blue ink
on off-white paper, in RGB; nothing is kept of the 28x28 frame or of where the digit sat in it.
predict.py then reads the files as it reads anyone's: it turns them grey, inverts them,
frames the digit in 20x20 by its centre of mass (as MNIST was made). The script compares its
answers with the model's accuracy on the same digits straight from the dataset, and on the
whole test set. The test set is only read here to score a model already trained.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository root: data.py, predict.py, train.py

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import predict  # noqa: E402  (imports Keras quietly)
from data import load_dataset  # noqa: E402
from make_examples import INK, PAPER, SCALE  # noqa: E402
from train import write_json  # noqa: E402

IMAGES = 1_000  # the first test digits, in test-set order


def disguised(image):
    """A uint8 28x28 digit (light on dark) cropped to its ink, enlarged SCALE times with bilinear
    interpolation, in dark ink on light paper, RGB."""
    rows, cols = np.nonzero(image)
    crop = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    height, width = crop.shape
    big = Image.fromarray(crop).resize((SCALE * width, SCALE * height), Image.Resampling.BILINEAR)
    ink = np.asarray(big)[..., None] / 255  # 0 = paper, 1 = ink
    return np.round(PAPER * (1 - ink) + INK * ink).astype(np.uint8)


def check(keras_model, dataset, images, folder):
    """predict.py's accuracy on `images` disguised test digits written into `folder`, against the
    model's on the same digits as they are and on the whole test set: a dict."""
    paths = []
    for i, x in enumerate(dataset.x_test[:images]):
        path = Path(folder) / f"{i:05d}-{dataset.y_test[i]}.png"
        Image.fromarray(disguised(np.round(x[..., 0] * 255).astype(np.uint8))).save(path)
        paths.append(str(path))
    answers, errors = predict.predict_files(keras_model, paths, "mnist")
    if errors:
        raise SystemExit(f"error: predict.py could not read {len(errors)} of the files: {next(iter(errors.values()))}")
    read = np.array([int(answers[path][0][0]) for path in paths])
    predicted = keras_model.predict(dataset.x_test, batch_size=1000, verbose=0).argmax(-1)
    labels = dataset.y_test
    return {"images": images, "predict_py_accuracy": float(np.mean(read == labels[:images])),
            "same_digits_accuracy": float(np.mean(predicted[:images] == labels[:images])),
            "test_accuracy": float(np.mean(predicted == labels)),
            "changed_answers": int(np.sum(read != predicted[:images]))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an MNIST model saved by main.py --save")
    parser.add_argument("--images", type=int, default=IMAGES, help=f"test digits to disguise (default {IMAGES})")
    parser.add_argument("--data-dir", help="folder with the dataset files (default: $DATA_DIR, ...)")
    parser.add_argument("--out", help="also write the figures as JSON")
    parser.add_argument("--keep", metavar="DIR", help="write the disguised images here (default: a temporary "
                        "folder, removed at the end)")
    args = parser.parse_args(argv)
    keras_model, dataset_name = predict.load_model(args.model)
    if dataset_name != "mnist":
        sys.exit(f"error: {args.model} was trained on {dataset_name}: this check disguises MNIST digits")
    dataset = load_dataset("mnist", args.data_dir)
    if not 1 <= args.images <= len(dataset.x_test):
        sys.exit(f"error: --images must be between 1 and {len(dataset.x_test)}, got {args.images}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or scratch
        os.makedirs(folder, exist_ok=True)
        result = {"model": os.path.basename(args.model), **check(keras_model, dataset, args.images, folder)}
    print(f"{args.model}: predict.py on {args.images} disguised test digits {result['predict_py_accuracy']:.2%}; "
          f"the model on the same digits as they are {result['same_digits_accuracy']:.2%}, on the whole test "
          f"set {result['test_accuracy']:.2%}; {result['changed_answers']} answers changed by the disguise")
    if args.out:
        write_json(args.out, {"command": "python docs/examples/check_predict.py " + " ".join(argv or sys.argv[1:]),
                              **result})


if __name__ == "__main__":
    main()
