"""A small, readable training loop: seeded, device-aware, with progress bars, history and exact resume.

The loop is deliberately plain (no callbacks framework): a chapter passes a model, a data loader, an
optimiser and a ``loss_fn(model, batch) -> loss`` (or ``(loss, metrics)``); :func:`fit` returns a
:class:`History` that :func:`companion.plot.plot_history` draws. :func:`fit` also averages weights (``ema``),
stops early with the best weights restored (``patience``), calls a per-step hook (``on_step``) and writes
resumable checkpoints that continue a run bit for bit, mid-epoch included.

On top of it, "dataset in, trained model out": :func:`train_model` (loader, optimiser, schedule), and the
chapters' recipes as thin wrappers that reach a model only through its methods or a loss passed in:
:func:`train_classifier` (chapters 02, 04, 07, 08) with :func:`evaluate_classifier`, :func:`train_autoencoder`
(09), :func:`train_vae` (10, 11), :func:`train_vqvae` and :func:`train_prior` (12); a two-player game needs
two optimisers and has its own short loop, :func:`train_gan` (14).

One submodule per part, read in this order; every name is imported here (``train.fit``, ``from companion.train
import fit``):

* ``train.loop`` — :func:`fit`, :class:`History`, :class:`DivergenceError`;
* ``train.evaluation`` — :func:`accuracy`, :func:`predict`, :func:`evaluate_classifier`, :func:`count_parameters`,
  :func:`smooth`;
* ``train.wrappers`` — :func:`train_model`, :func:`train_classifier`, :class:`TensorBatches`, ``SCHEDULES``;
* ``train.generative`` — :func:`train_autoencoder`, :func:`train_vae`, :func:`train_vqvae`, :func:`train_prior`;
* ``train.adversarial`` — :func:`train_gan` (two optimisers, its own short loop), :func:`train_cyclegan` and
  :func:`train_vqgan` (16).

Introduced in chapter 02.
"""

from .adversarial import train_cyclegan, train_gan, train_vqgan
from .evaluation import accuracy, count_parameters, evaluate_classifier, predict, smooth
from .generative import train_autoencoder, train_prior, train_vae, train_vqvae
from .loop import DivergenceError, History, fit
from .wrappers import SCHEDULES, TensorBatches, train_classifier, train_model

__all__ = [
    "SCHEDULES",
    "DivergenceError",
    "History",
    "TensorBatches",
    "accuracy",
    "count_parameters",
    "evaluate_classifier",
    "fit",
    "predict",
    "smooth",
    "train_autoencoder",
    "train_classifier",
    "train_cyclegan",
    "train_gan",
    "train_model",
    "train_prior",
    "train_vae",
    "train_vqgan",
    "train_vqvae",
]
