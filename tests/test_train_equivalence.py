"""The one training loop reproduces every training function it replaced, bit for bit.

Each test loads the old function from the package as it was at commit ``a0c18c2`` (extracted with ``git
archive`` into a temporary folder and imported as ``companion_a0c18c2``, so its own old ``train.fit`` runs),
trains a tiny model with it and with the new ``companion.train`` function from the same initial weights, and
compares every parameter and buffer with ``torch.equal``. Skipped where git or that commit is not available.
"""

from __future__ import annotations

import copy
import functools
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from companion import augment, mlp, resnet, train, vit, vqvae
from companion import autoencoder as ae
from companion import vae as vae_mod
from companion import vae_variants as vv

OLD = "a0c18c2"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    """``old("mlp")`` imports ``companion/mlp.py`` as it was at commit OLD (with its old siblings)."""
    try:
        files = subprocess.run(["git", "ls-tree", "--name-only", OLD, "companion/"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.split()
        archive = subprocess.run(["git", "archive", OLD, "--", *[f for f in files if f.endswith(".py")]],
                                 cwd=ROOT, check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"needs git and commit {OLD}")
    import io
    import tarfile

    root = tmp_path_factory.mktemp("old")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data") if sys.version_info >= (3, 12) else tar.extractall(root)
    (root / "companion").rename(root / f"companion_{OLD}")
    sys.path.insert(0, str(root))
    yield lambda name: importlib.import_module(f"companion_{OLD}.{name}")
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m.startswith(f"companion_{OLD}")]:
        del sys.modules[name]


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def twins(build):
    torch.manual_seed(0)
    m = build()
    return m, copy.deepcopy(m)


def rows(history, split="train"):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in getattr(history, split)]


def _classes(n=160, shape=(16,), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = (x.flatten(1)[:, 0] + x.flatten(1)[:, 1] > 0).long()
    return TensorDataset(x, y)


@pytest.mark.parametrize("kwargs", [dict(epochs=3, eval_every=2), dict(epochs=4, max_steps=13)])
def test_train_classifier_reproduces_mlp_train_classifier(old, kwargs):
    tr, te = _classes(), _classes(60, seed=1)
    a, b = twins(lambda: nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 2)))
    h_old, acc_old = old("mlp").train_classifier(a, tr, te, batch_size=32, lr=1e-2, weight_decay=1e-4, seed=3,
                                                 progress=False, log_every=1, **kwargs)
    new = dict(kwargs)
    if "max_steps" in new:
        new["steps"] = new.pop("max_steps")
    h_new, acc_new = train.train_classifier(b, tr, te, batch_size=32, lr=1e-2, weight_decay=1e-4, seed=3,
                                            criterion=mlp.cross_entropy, progress=False, log_every=1, **new)
    assert_same_weights(a, b)
    assert acc_old == acc_new
    assert rows(h_old, "eval") == rows(h_new, "eval")
    assert rows(h_old)[:-1] == rows(h_new)[:-1]


def test_train_classifier_reproduces_resnet_train_classifier_and_evaluate(old):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(72, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
    data = TensorDataset(x, y)
    a, b = twins(lambda: resnet.ResNet(resnet.ResNetConfig.tiny(num_classes=2)))
    h_old = old("resnet").train_classifier(a, data, steps=20, lr=0.05, batch_size=16, warmup=4, seed=1,
                                           progress=False, log_every=1)
    h_new, acc = train.train_classifier(b, data, steps=20, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4,
                                        batch_size=16, schedule="warmup_cosine", warmup=4, shuffle_seed=True,
                                        drop_last=True, seed=1, progress=False, log_every=1)
    assert acc is None
    assert_same_weights(a, b)
    assert rows(h_old)[:-1] == rows(h_new)[:-1]
    assert old("resnet").evaluate(a, data) == train.evaluate_classifier(b, data)


@pytest.mark.parametrize("each_epoch", [False, True])
def test_train_classifier_reproduces_vit_train_classifier(old, each_epoch):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 28, 28, generator=g) * 0.1
    y = torch.randint(0, 2, (96,), generator=g)
    x[y == 1, :, :14] += 0.8
    ds = TensorDataset(x, y)
    a, b = twins(lambda: vit.ViT(vit.ViTConfig.tiny(num_classes=2)))
    h_old, acc_old = old("vit").train_classifier(a, ds, ds, steps=8, batch_size=32, lr=3e-3, warmup=3, max_shift=2,
                                                 seed=2, eval_each_epoch=each_epoch, progress=False, log_every=1)
    h_new, acc_new = train.train_classifier(b, ds, ds, steps=8, batch_size=32, lr=3e-3, weight_decay=0.05,
                                            schedule="warmup_cosine", warmup=3,
                                            augment=functools.partial(augment.random_shift_crop, max_shift=2),
                                            shuffle_seed=True, drop_last=True, eval_batch_size=500,
                                            eval_every=1 if each_epoch else None, seed=2, progress=False,
                                            log_every=1)
    assert_same_weights(a, b)
    assert acc_old == acc_new
    assert rows(h_old, "eval") == rows(h_new, "eval")
    assert rows(h_old)[:-1] == rows(h_new)[:-1]


def _images(n=240, seed=0, size=28):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * (torch.rand(1, 1, size, size, generator=g) > 0.5)


@pytest.mark.parametrize("kwargs", [
    dict(epochs=4, warmup_steps=6, val=True, patience=1, lr_decay=0.9),
    dict(epochs=5, max_steps=11, ema=0.9, val=True, warmup_steps=3),
    dict(epochs=2, iwae_k=3, weight_decay=1e-3, binarize=False),
])
def test_train_vae_reproduces_vae_train_vae(old, kwargs):
    x = _images()
    kwargs = dict(kwargs)
    if kwargs.pop("val", False):
        kwargs["val"] = x[200:]
    seen_old, seen_new = [], []
    a, b = twins(lambda: vae_mod.VAE(vae_mod.VAEConfig.tiny(latent_dim=4, hidden=(32,))))
    h_old = old("vae").train_vae(a, x[:200], batch_size=40, lr=3e-3, seed=5, progress=False, log_every=1,
                                 on_epoch=lambda e, m: seen_old.append(e), **kwargs)
    h_new = train.train_vae(b, x[:200], batch_size=40, lr=3e-3, seed=5, progress=False, log_every=1,
                            on_epoch=lambda e, m: seen_new.append(e), **kwargs)
    assert_same_weights(a, b)
    assert seen_old == seen_new
    assert rows(h_old, "eval") == rows(h_new, "eval")
    assert rows(h_old) == rows(h_new)


@pytest.mark.parametrize("conditional", [False, True])
def test_train_vae_reproduces_vae_variants_train_vae(old, conditional):
    x = _images(150, size=8)
    y = torch.arange(150) % 10
    cfg = vv.CondVAEConfig.tiny(num_classes=10 if conditional else 0)
    a, b = twins(lambda: (vv.CVAE(cfg) if conditional else vv.BetaVAE(cfg, beta=4.0)))
    labels = y if conditional else None
    h_old = old("vae_variants").train_vae(a, x, labels, epochs=3, max_steps=10, batch_size=32, seed=1,
                                          progress=False, log_every=1)
    h_new = train.train_vae(b, x, labels, objective="loss", epochs=3, max_steps=10, batch_size=32, seed=1,
                            progress=False, log_every=1)
    assert_same_weights(a, b)
    assert rows(h_old)[:-1] == rows(h_new)[:-1]


def test_heldout_anomaly_split_into_training_and_scores(old):
    x = _images(300, size=8)
    y = torch.arange(300) % 10
    cfg = vv.CondVAEConfig.tiny()
    out = old("vae_variants").heldout_anomaly(3, x[:200], y[:200], x[200:], y[200:], config=cfg, epochs=2,
                                              batch_size=64, seed=0, progress=False)
    torch.manual_seed(0)
    model = vv.BetaVAE(cfg, beta=1.0)
    keep = y[:200] != 3
    train.train_vae(model, x[:200][keep], objective="loss", epochs=2, batch_size=64, seed=0, progress=False)
    new = vv.anomaly_scores(model, 3, x[200:], y[200:], seed=0)
    assert_same_weights(out["model"], model)
    assert torch.equal(out["scores"], new["scores"]) and out["auroc"] == new["auroc"]
    assert torch.equal(out["is_anomaly"], new["is_anomaly"]) and out["digit"] == new["digit"]


@pytest.mark.parametrize("kind", ["bce", "mse", "noise"])
def test_train_autoencoder_reproduces_autoencoder_train_autoencoder(old, kind):
    x = (_images(96) > 0.5).float()
    if kind == "mse":
        x = x.flatten(1)
        build = lambda: ae.LinearAutoencoder(784, 8)  # noqa: E731
    else:
        build = lambda: ae.ConvAutoencoder(ae.AEConfig.tiny())  # noqa: E731
    a, b = twins(build)
    noise = ("masking", 0.3) if kind == "noise" else None
    loss = "mse" if kind == "mse" else "bce"
    evals = lambda m: {"w": float(next(m.parameters()).sum())}  # noqa: E731
    h_old = old("autoencoder").train_autoencoder(a, x, steps=9, batch_size=40, lr=1e-2, loss=loss, noise=noise,
                                                 seed=2, progress=False, log_every=1, eval_fn=evals)
    h_new = train.train_autoencoder(b, x, ae.reconstruction_loss(loss, noise=noise, seed=2), steps=9, batch_size=40,
                                    lr=1e-2, seed=2, progress=False, log_every=1, eval_fn=evals)
    assert_same_weights(a, b)
    assert rows(h_old, "eval") == rows(h_new, "eval")
    assert rows(h_old)[:-1] == rows(h_new)[:-1]


def test_train_vqvae_and_train_prior_reproduce_the_old_ones(old):
    x = (_images(80) > 0.5).float()
    ds = TensorDataset(x, torch.zeros(80))
    a, b = twins(lambda: vqvae.VQVAE(vqvae.VQVAEConfig.tiny(num_codes=16, hidden=16)))
    h_old = old("vqvae").train_vqvae(a, ds, steps=7, batch_size=32, lr=3e-3, seed=1, progress=False, log_every=1)
    h_new = train.train_vqvae(b, ds, vqvae.vqvae_loss, steps=7, batch_size=32, lr=3e-3, seed=1, progress=False,
                              log_every=1)
    assert_same_weights(a, b)
    assert rows(h_old)[:-1] == rows(h_new)[:-1]

    grids = torch.randint(0, 8, (40, 2, 3), generator=torch.Generator().manual_seed(0))
    a, b = twins(lambda: vqvae.CodePrior(vqvae.PriorConfig.tiny(num_codes=8, height=2, width=3)))
    h_old = old("vqvae").train_prior(a, grids, steps=9, batch_size=16, lr=1e-2, seed=1, progress=False, log_every=1)
    h_new = train.train_prior(b, grids, vqvae.prior_loss, steps=9, batch_size=16, lr=1e-2, seed=1, progress=False,
                              log_every=1)
    assert_same_weights(a, b)
    assert rows(h_old)[:-1] == rows(h_new)[:-1]
