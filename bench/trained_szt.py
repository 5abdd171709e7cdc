"""A trained SZT network for benchmarks that need realistic layer samples.

The paper's 12-10-7-5-4-3-2 tanh network with beta = 0.005, trained by the ``szt``
experiment's own training loop (same split, optimiser and seed streams) for a given
number of epochs.  Epoch 749 is near the peak of I(X;T) of the deeper layers, where the
hidden representations are clustered and the Gaussian log-sum-exp at small beta is
dominated by near pairs: the regime the pruned kernel is for.  Training takes a few
seconds on one core, so nothing is cached.
"""

from __future__ import annotations

import numpy as np

TRAINED_EPOCHS = 749
BETA = 0.005


def trained_szt(epochs: int = TRAINED_EPOCHS, *, seed: int = 0, beta: float = BETA):
    """``(model, x, y)``: the noisy SZT network after ``epochs`` epochs, and the dataset."""
    import torch

    from infoflow.datasets import szt
    from infoflow.experiments.szt import WIDTHS
    from infoflow.experiments.training import Trainer, seed_streams, split_dataset, torch_threads
    from infoflow.nn import NoisyMLP

    x, y = szt()
    streams = seed_streams(seed)
    split = split_dataset(x, y, streams["split"])
    with torch_threads(None):
        torch.manual_seed(seed)
        model = NoisyMLP(WIDTHS, activation="tanh", beta=beta)
        trainer = Trainer(model, split, lr=4e-4, batch_size=256, streams=streams)
        for _ in range(epochs):
            trainer.train_epoch()
    return model, x, y


def layer_samples(model, x, repeats: int, *, rng=0) -> dict[str, np.ndarray]:
    """``sample_layers`` of the model in eval mode: {layer: (m, R, d) float32}."""
    from infoflow.sampling import sample_layers

    model.eval()
    return sample_layers(model, x, repeats=repeats, rng=rng)
