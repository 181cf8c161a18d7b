"""Recipe of the course's frozen feature network ``mnist_features`` (chapter 13).

It is always trained on MNIST-test[:8000] (whatever else is available), so that MNIST-test[8000:10000] — the
reference and floor sets of ``companion.evaluation`` — is held out for it, and its card reports the accuracy on
those 2,000 images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset

from .. import data
from ..evaluation import FeatureNet
from ..losses import cross_entropy
from ..profile import Profile, seed_everything
from ..train import train_classifier
from ._common import card_info

#: Epochs and training images per profile of ``mnist_features``.
FEATURES_SCHEDULE: dict[str, dict[str, Any]] = {
    "ci": {"epochs": 1, "n_train": 2000},
    "cpu": {"epochs": 8, "n_train": 8000},
    "gpu": {"epochs": 15, "n_train": 8000},
}
FEATURES_LR, FEATURES_WEIGHT_DECAY, FEATURES_BATCH = 2e-3, 5e-4, 64


def build_mnist_features() -> FeatureNet:
    """The untrained model of checkpoint ``mnist_features``: ``FeatureNet()`` (widths 16/32/64, 64 features)."""
    return FeatureNet()


def features_splits(n_train: int = 8000) -> tuple[TensorDataset, TensorDataset, str]:
    """``(train, held_out, description)``: MNIST-test[:n_train] and MNIST-test[8000:10000], whatever is available."""
    x, y = data.mnist("test").tensors
    if not 1 <= n_train <= 8000:
        raise ValueError(f"n_train must lie in 1..8000, got {n_train}")
    desc = (f"trained on MNIST-test[:{n_train}], evaluated on MNIST-test[8000:10000] (the reference and floor sets "
            "of chapter 13, never trained on)")
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[8000:], y[8000:]), desc


def train_mnist_features(profile: Profile) -> tuple[FeatureNet, dict[str, Any]]:
    """Train checkpoint ``mnist_features``: AdamW (cosine decay), batch 64, no augmentation, seed 0; see
    :data:`FEATURES_SCHEDULE`. Metric: ``test_accuracy`` on MNIST-test[8000:10000]."""
    sched = FEATURES_SCHEDULE[profile.name]
    train, test, desc = features_splits(sched["n_train"])
    seed_everything(profile.seed)
    model = build_mnist_features()
    history, acc = train_classifier(model, train, test, epochs=sched["epochs"], batch_size=FEATURES_BATCH,
                                    lr=FEATURES_LR, weight_decay=FEATURES_WEIGHT_DECAY, seed=profile.seed,
                                    criterion=cross_entropy, device=profile.device,
                                    desc=f"mnist_features ({profile.name})")
    with torch.no_grad():  # put the features on a unit scale: 1 / their root mean square on the training images
        model = model.cpu().eval()
        hidden = torch.cat([model._hidden(xb) for xb in train.tensors[0].split(1000)])
        model.scale.fill_(1.0 / hidden.pow(2).mean().sqrt().item())
    description = (f"FeatureNet (3x [3x3 conv, ReLU, 2x2 max pool] with 16/32/64 channels, a 64-d ReLU feature "
                   f"layer, a linear head) on MNIST, chapter 13: the frozen feature network of FLD/KID/precision/"
                   f"recall. AdamW lr {FEATURES_LR:g}, weight decay {FEATURES_WEIGHT_DECAY:g}, cosine decay, batch "
                   f"{FEATURES_BATCH}, {sched['epochs']} epoch(s), seed {profile.seed}, no augmentation; features scaled by "
                   f"{model.scale.item():.4g} (1 / their RMS on the training images)")
    seen = {"train": f"mnist-test[0:{sched['n_train']}]", "heldout": "mnist-test[8000:10000]"}
    return model, card_info(description, f"{desc} [profile {profile.name}]", history.train[-1]["step"],
                            {"test_accuracy": round(float(acc), 4)}, seen)
