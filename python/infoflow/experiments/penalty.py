r"""The information-bottleneck penalty and training with it (the ``ib-tradeoff`` experiment).

:func:`batch_information` is the differentiable minibatch estimate
:math:`\hat h(\hat P_S * \mathcal N(0, \beta^2 I)) - h_Z` of a layer's I(X;T);
:class:`PenalisedTrainer` trains on the loss :math:`\mathrm{CE} + \lambda \hat I(X;T_\ell)`
(see :mod:`infoflow.experiments.ib_tradeoff` for the choices behind it).
"""

from __future__ import annotations

import numpy as np

from .training import Trainer

__all__ = ["batch_information", "PenalisedTrainer", "DEFAULT_PENALTY_QUERIES"]

#: Monte Carlo queries of each minibatch estimate (8 per centre of a batch of 256).
DEFAULT_PENALTY_QUERIES = 2048


def batch_information(s, beta: float, *, mc_queries: int = DEFAULT_PENALTY_QUERIES, rng=None, num_threads=1):
    r"""The minibatch estimate :math:`\hat I(X;T) = \hat h(\hat P_S * \mathcal N(0, \beta^2 I)) - h_Z`.

    Parameters
    ----------
    s : torch.Tensor, shape (B, d)
        One sample of the layer's noiseless value S for each of the B inputs of the batch
        (float32 or float64).  If it requires a gradient, so does the result.
    beta : float
        The layer's noise standard deviation.
    mc_queries : int
        Monte Carlo queries of the entropy estimate (reparameterised: q = s_J + beta z).
    rng : None, int or numpy.random.Generator
        Source of the Monte Carlo draws.
    num_threads : int, optional
        Kernel threads (default 1: the problem is small).

    Returns
    -------
    value : torch.Tensor
        0-d float64, in nats, carrying the autograd graph when ``s`` requires a gradient
        (and grad mode is on).
        For X uniform over the batch it is the SP estimate of I(X;T) when S is a function of
        X (the first noisy layer), and otherwise of :math:`h(T) - h_Z`, an upper bound on
        I(X;T) (:math:`h(T \mid X) \ge h_Z`).  At most about :math:`\ln B`.
    stderr : float
        Its Monte Carlo standard error (nats).
    """
    import torch

    from ..entropy import mixture_entropy, noise_entropy

    estimate = mixture_entropy(s, beta, mc_queries=mc_queries, rng=rng, num_threads=num_threads)
    # A tensor either way: with the graph when s requires a gradient, else a plain float64 value.
    value = torch.as_tensor(estimate.value, dtype=torch.float64)
    return value - noise_entropy(s.shape[-1], beta), float(estimate.stderr)


class PenalisedTrainer(Trainer):
    r"""The 12-bit experiment's :class:`~infoflow.experiments.training.Trainer` with the loss
    :math:`\mathrm{CE} + \lambda \hat I(X;T_\ell)`.

    Parameters
    ----------
    model, split, lr, batch_size, streams
        As for :class:`~infoflow.experiments.training.Trainer` (the minibatch order and the
        evaluation noise come from ``streams``; the training noise from torch's global
        generator).
    lam : float
        :math:`\lambda \ge 0`.  With 0 the weights follow plain cross-entropy training
        exactly; the minibatch estimate is still computed, on detached values, for the
        record.
    layer : infoflow.nn.GaussianNoise
        The penalised layer's noise module: its input in the training forward pass is the
        batch's S.
    mc_queries : int
        Monte Carlo queries of each minibatch estimate.
    penalty_rng : numpy.random.Generator
        Source of their draws (never torch's generator, so that the noise of the network
        is the same for every lambda).
    num_threads : int, optional
        Threads of the penalty's kernel (default 1).

    Attributes
    ----------
    history : list of dict
        Per epoch: ``epoch``, ``loss`` (the penalised loss), ``cross_entropy`` and
        ``ixt_batch`` (the minibatch estimate), each the mean over the epoch's batches, in
        nats.
    """

    def __init__(self, model, split, *, lr: float, batch_size: int, streams, lam: float, layer, mc_queries: int,
                 penalty_rng: np.random.Generator, num_threads: int | None = 1, warmup: int = 0):
        super().__init__(model, split, lr=lr, batch_size=batch_size, streams=streams)
        self.lam = float(lam)
        self.warmup = int(warmup)
        self.layer = layer
        self.mc_queries = int(mc_queries)
        self.penalty_rng = penalty_rng
        self.num_threads = num_threads
        self.history: list[dict] = []

    def train_epoch(self) -> float:
        """One pass over the training rows; the mean penalised loss of the batches (nats)."""
        import torch

        x, y = self.split.x_train, self.split.y_train
        order = torch.randperm(x.shape[0], generator=self.shuffle)
        x, y = x[order], y[order]
        self.model.train()
        lam = self.current_lambda()
        captured = [None]
        # S of the batch, from the very forward pass that gives the logits: one pass, and the
        # penalty sees the same noise draws as the cross-entropy.
        handle = self.layer.register_forward_pre_hook(lambda module, args: captured.__setitem__(0, args[0]))
        sums = np.zeros(3)
        batches = 0
        try:
            for start in range(0, x.shape[0], self.batch_size):
                logits = self.model(x[start:start + self.batch_size])
                cross_entropy = self.loss(logits, y[start:start + self.batch_size])
                s = captured[0] if lam > 0 else captured[0].detach()
                ixt, _ = batch_information(s, self.layer.beta, mc_queries=self.mc_queries, rng=self.penalty_rng,
                                           num_threads=self.num_threads)
                loss = cross_entropy + lam * ixt if lam > 0 else cross_entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                sums += (loss.item(), cross_entropy.item(), ixt.item())
                batches += 1
        finally:
            handle.remove()
        self.epochs_done += 1
        loss, cross_entropy, ixt = sums / batches
        self.history.append({"epoch": self.epochs_done, "lambda": lam, "loss": loss, "cross_entropy": cross_entropy,
                             "ixt_batch": ixt})
        return float(loss)

    def current_lambda(self) -> float:
        """The weight of the penalty in the next epoch: lambda * min(1, e / warmup) in epoch
        e = 1, 2, ..., lambda itself without a warm-up."""
        if self.warmup <= 0:
            return self.lam
        return self.lam * min(1.0, (self.epochs_done + 1) / self.warmup)
