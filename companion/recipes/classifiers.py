"""Recipes of the shipped MNIST classifiers: ``mlp_mnist`` (ch. 02), ``lenet_mnist`` (04), ``resnet_mnist`` (07),
``vit_mnist`` (08).

Each checkpoint has ``build_<name>() -> nn.Module`` (the untrained model) and ``train_<name>(profile) ->
(model, card info)``; the architecture constants the chapters quote (:data:`MLP_SIZES`, :data:`RESNET_CONFIG`,
:data:`VIT_CONFIG`) live here. All train on :func:`companion.data.mnist_splits` (offline: MNIST-test[:8000],
evaluated on MNIST-test[8000:], and the card says so).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.utils.data import TensorDataset

from .. import data
from ..augment import ShiftedDataset, random_shift_crop
from ..cnn import LeNet, LeNetConfig
from ..losses import cross_entropy
from ..mlp import MLP
from ..profile import Profile, seed_everything
from ..resnet import ResNet, ResNetConfig
from ..train import evaluate_classifier, train_classifier
from ..vit import ViT, ViTConfig
from ._common import card_info, offline

# ----------------------------------------------------------------------------------------------- mlp_mnist

#: Layer sizes of ``mlp_mnist``: 784-256-128-10 with ReLU (235,146 parameters).
MLP_SIZES: tuple[int, ...] = (784, 256, 128, 10)


def build_mlp_mnist() -> MLP:
    """The untrained model of checkpoint ``mlp_mnist``: ``MLP(MLP_SIZES, "relu")``. Introduced in chapter 02."""
    return MLP(MLP_SIZES, "relu")


def train_mlp_mnist(profile: Profile) -> tuple[MLP, dict[str, Any]]:
    """Train checkpoint ``mlp_mnist``: AdamW (lr 1e-3, weight decay 1e-4, cosine decay), batch 128, seed 0.

    ``ci`` trains 1 epoch on 2,000 images, ``cpu`` 20 epochs, ``gpu`` 30 epochs on the whole training split
    (about 20 s at ``cpu`` offline on 2 cores). Metric: ``test_accuracy`` on the evaluation split.
    """
    epochs = profile.pick(ci=1, cpu=20, gpu=30)
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, test, desc = splits
    seed_everything(profile.seed)
    model = build_mlp_mnist()
    history, acc = train_classifier(model, train, test, epochs=epochs, lr=1e-3, weight_decay=1e-4, seed=profile.seed,
                                    criterion=cross_entropy, device=profile.device, desc=f"mlp_mnist ({profile.name})")
    description = (f"MLP {'-'.join(map(str, MLP_SIZES))} (ReLU) on MNIST, chapter 02: AdamW lr 1e-3, weight decay "
                   f"1e-4, cosine decay, batch 128, {epochs} epoch(s), seed {profile.seed}, no augmentation")
    return model.cpu().eval(), card_info(description, desc, history.train[-1]["step"],
                                         {"test_accuracy": round(acc, 4)}, splits.info)


# ----------------------------------------------------------------------------------------------- lenet_mnist

#: Epochs and training images (``None`` = the whole split) of ``lenet_mnist`` per profile.
LENET_SCHEDULE: dict[str, dict[str, Any]] = {
    "ci": {"epochs": 2, "n_train": 2000},
    "cpu": {"epochs": 20, "n_train": None},
    "gpu": {"epochs": 30, "n_train": None},
}
LENET_LR, LENET_WEIGHT_DECAY, LENET_BATCH = 2e-3, 5e-4, 64


def build_lenet_mnist() -> LeNet:
    """The untrained model of checkpoint ``lenet_mnist``: ``LeNet(LeNetConfig.modern())`` (61,706 parameters)."""
    return LeNet(LeNetConfig.modern())


def train_lenet_mnist(profile: Profile) -> tuple[LeNet, dict[str, Any]]:
    """Train checkpoint ``lenet_mnist``: AdamW (cosine decay to 0), no augmentation, seed 0; see
    :data:`LENET_SCHEDULE` for epochs per profile. Metric: ``test_accuracy`` on the evaluation split."""
    epochs, n_train = LENET_SCHEDULE[profile.name]["epochs"], LENET_SCHEDULE[profile.name]["n_train"]
    splits = data.mnist_splits(profile.name, n_train=n_train)
    train, test, desc = splits
    seed_everything(profile.seed)
    model = build_lenet_mnist()
    history, acc = train_classifier(model, train, test, epochs=epochs, batch_size=LENET_BATCH, lr=LENET_LR,
                                    weight_decay=LENET_WEIGHT_DECAY, seed=profile.seed, criterion=cross_entropy,
                                    device=profile.device, desc=f"lenet_mnist ({profile.name})")
    description = (f"LeNet-5 (ReLU, max pooling, 28x28 with padding 2) on MNIST, chapter 04: AdamW lr "
                   f"{LENET_LR:g}, weight decay {LENET_WEIGHT_DECAY:g}, cosine decay, batch {LENET_BATCH}, "
                   f"{epochs} epoch(s), seed {profile.seed}, no augmentation")
    return model.cpu().eval(), card_info(description, desc, history.train[-1]["step"],
                                         {"test_accuracy": round(acc, 4)}, splits.info)


# ----------------------------------------------------------------------------------------------- resnet_mnist

#: ``resnet_mnist``: ResNet-20 (n = 3, basic blocks, option A) at half the paper's width, 8/16/32.
RESNET_CONFIG = ResNetConfig(n=3, widths=(8, 16, 32))
#: Epochs per profile of ``resnet_mnist``.
RESNET_EPOCHS = {"ci": 1, "cpu": 5, "gpu": 30}
RESNET_LR, RESNET_WEIGHT_DECAY, RESNET_BATCH = 0.1, 5e-4, 128


def build_resnet_mnist() -> ResNet:
    """The untrained model of checkpoint ``resnet_mnist``: ``ResNet(RESNET_CONFIG)`` (seed 0)."""
    torch.manual_seed(0)
    return ResNet(RESNET_CONFIG)


def train_resnet_mnist(profile: Profile) -> tuple[ResNet, dict[str, Any]]:
    """Train checkpoint ``resnet_mnist``: SGD (momentum 0.9, lr 0.1, weight decay 5e-4), warm-up then cosine
    decay, batch 128, random shifts of up to 2 pixels, seed 0. The >= 99.4 % target of the ``gpu`` profile
    refers to the standard 60,000/10,000 split, which is not available offline. Metrics: test accuracy and loss."""
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, test, desc = splits
    epochs = RESNET_EPOCHS[profile.name]
    steps = epochs * (len(train) // RESNET_BATCH)
    seed_everything(profile.seed)
    model = build_resnet_mnist()
    shifted = ShiftedDataset(train, max_shift=2, seed=1)
    history, _ = train_classifier(model, shifted, steps=steps, optimizer="sgd", lr=RESNET_LR,
                                  weight_decay=RESNET_WEIGHT_DECAY, batch_size=RESNET_BATCH, schedule="warmup_cosine",
                                  warmup=min(200, steps // 10), shuffle_seed=True, drop_last=True, seed=profile.seed,
                                  device=profile.device, desc=f"resnet_mnist ({profile.name})")
    model = model.cpu().eval()
    metrics = evaluate_classifier(model, TensorDataset(*test.tensors))
    note = (" Trained offline on 8,000 images (the MNIST training split is not available here), evaluated on the "
            "2,000 images MNIST-test[8000:]; the >= 99.4% target of the gpu recipe is for the standard "
            "60,000/10,000 split and does not apply to this card.") if offline(desc) else ""
    description = (f"ResNet-20 (6n+2, n=3, basic blocks, option-A shortcuts, BN) at half width 8/16/32 on MNIST, "
                   f"chapter 07: SGD momentum 0.9, lr {RESNET_LR:g}, weight decay {RESNET_WEIGHT_DECAY:g}, warm-up + "
                   f"cosine, batch {RESNET_BATCH}, {epochs} epoch(s) over {len(train)} images, random shifts "
                   f"<= 2 px, seed {profile.seed}.{note}")
    return model, card_info(description, desc, history.train[-1]["step"],
                            {"test_accuracy": round(metrics["accuracy"], 4), "test_loss": round(metrics["loss"], 4)}, splits.info)


# ----------------------------------------------------------------------------------------------- vit_mnist

#: The architecture of ``vit_mnist``: 4x4 patches (49 tokens + CLS), D = 64, 4 blocks.
VIT_CONFIG = ViTConfig(patch_size=4, dim=64, depth=4, heads=4, mlp_ratio=2.0, pos="learned", pool="cls")


def build_vit_mnist() -> ViT:
    """The untrained model of checkpoint ``vit_mnist``: ``ViT(VIT_CONFIG)`` (seed 0)."""
    torch.manual_seed(0)
    return ViT(VIT_CONFIG)


def train_vit_mnist(profile: Profile) -> tuple[ViT, dict[str, Any]]:
    """Train checkpoint ``vit_mnist``: AdamW (lr 2e-3, weight decay 0.05), warm-up then cosine decay, batch 128,
    random shifts of up to 2 pixels, seed 0. Offline, 8,000 training images cap the accuracy below the >= 98.5 %
    the ``gpu`` recipe aims for (the ``cpu`` recipe, 15 epochs = 930 steps, reached 97.5 % on MNIST-test[8000:]
    in about 6 CPU-minutes on one thread). Metric: ``test_accuracy``."""
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, test, desc = splits
    epochs = profile.pick(ci=1, cpu=15, gpu=30)
    steps = epochs * (len(train) // 128)
    seed_everything(profile.seed)
    model = build_vit_mnist()
    history, acc = train_classifier(model, train, test, steps=steps, lr=2e-3, weight_decay=0.05,
                                    schedule="warmup_cosine", warmup=min(500, steps // 10),
                                    augment=functools.partial(random_shift_crop, max_shift=2), shuffle_seed=True,
                                    drop_last=True, eval_every=None if profile.is_ci else 1, eval_batch_size=500,
                                    seed=profile.seed, device=profile.device, desc=f"vit_mnist ({profile.name})")
    note = (" Trained offline on 8,000 images only (the MNIST training split is not available here): a ViT has "
            "no convolutional prior and needs data, so this accuracy stays below the >= 98.5% the gpu recipe "
            "targets on the full 60,000-image training split.") if offline(desc) else ""
    description = (f"ViT on MNIST, chapter 08: 4x4 patches (49 tokens + CLS), D=64, 4 pre-LN blocks, 4 heads, "
                   f"MLP ratio 2, learned positions; AdamW lr 2e-3, wd 0.05, warm-up + cosine, batch 128, "
                   f"{epochs} epoch(s) over {len(train)} images, random shifts <= 2 px, seed {profile.seed}.{note}")
    return model.cpu().eval(), card_info(description, desc, history.train[-1]["step"],
                                         {"test_accuracy": round(float(acc), 4)}, splits.info)
