"""fast_cnn's epochs and peak learning rate, chosen again on the validation split alone.

fast_cnn's settings (model.py: 6 epochs, one-cycle to a peak learning rate of 0.005) were fixed
after a trial run whose printout showed its test accuracy as well as its validation accuracy
(experiments/fast.py says so). This experiment makes the same two choices again as they should
have been made: each candidate trains with 3 seeds and is compared on the validation split
(6,000 training images held out, seeded), the figure in the "measured" column. The candidates
are the trial run's 8 epochs against the 6 kept, and half and twice the peak learning rate.

Honesty: the test accuracy is printed beside each row because every trained model is scored
on it (train.evaluate), but no choice here reads it: the validation split would choose the row
with the highest validation mean. Two rows closer than their seeds' spread (about 0.05 points,
3 of 6,000 images) are a tie, which the validation split cannot settle.
"""
from experiments.runner import Step

DATASET = "mnist"
ON_VALIDATION = dict(published_on="validation")  # compare the rows' validation accuracies

STEPS = [
    Step("6 epochs, peak learning rate 0.005 (fast_cnn)", "fast_cnn", **ON_VALIDATION),
    Step("8 epochs, peak learning rate 0.005 (the trial run)", "fast_cnn", training=dict(epochs=8), **ON_VALIDATION),
    Step("6 epochs, peak learning rate 0.0025", "fast_cnn", training=dict(learning_rate=0.0025), **ON_VALIDATION),
    Step("6 epochs, peak learning rate 0.01", "fast_cnn", training=dict(learning_rate=0.01), **ON_VALIDATION),
]
