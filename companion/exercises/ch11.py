"""Exercise checks for chapter 11 · VAE variants and uses.

Every check calls the student's function directly (so a stub's ``NotImplementedError`` reaches
:func:`companion.exercises.result` and reads as *not attempted*), on several inputs including edge cases
(ties, a single positive, constant variables, non-contiguous labels, a batch of one), and compares through
:func:`expect_close` with ``companion.vae_variants`` — whose AUROC and mutual information
``tests/test_vae_variants.py`` checks against scikit-learn, and whose ELBO it checks against
``torch.distributions``. The AUROC is also compared with its pairwise definition P(s+ > s-) + ½ P(s+ = s-).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import metrics
from .. import vae_variants as vv
from . import exercise, expect_close


def _pairwise_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The definition, O(n+ n-): the share of (positive, negative) pairs ranked right, ties counting one half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


@exercise("11.1", "AUROC from ranks (Mann–Whitney U)", reference=metrics.auroc)
def check_auroc(fn: Callable[..., float]) -> str:
    g = torch.Generator().manual_seed(111)
    labels = (torch.rand(200, generator=g) < 0.25).long()
    cases = [
        ("continuous scores, 1 in 4 positive", torch.randn(200, generator=g) + labels, labels),
        ("integer scores with many ties", (torch.randint(0, 5, (200,), generator=g) + labels).double(), labels),
        ("perfect separation", torch.tensor([0.1, 0.2, 0.3, 0.9, 1.0]), torch.tensor([0, 0, 0, 1, 1])),
        ("reversed (every anomaly scored lowest)", torch.tensor([3.0, 2.0, 1.0, 0.0]), torch.tensor([0, 0, 1, 1])),
        ("all scores tied", torch.full((6,), 2.5), torch.tensor([1, 0, 1, 0, 0, 0])),
        ("a single positive, tied with one negative", torch.tensor([1.0, 2.0, 2.0, 3.0]), torch.tensor([0, 1, 0, 0])),
    ]
    found = []
    for name, s, y in cases:
        expected = metrics.auroc(s, y)
        assert abs(expected - _pairwise_auroc(s.double(), y)) < 1e-12  # the reference agrees with the definition
        yours = fn(s.clone(), y.clone())
        expect_close(f"AUROC for {name}", yours, expected, atol=1e-9, rtol=0.0)
        found.append(float(yours))
    return (f"6 cases match the pairwise definition, incl. ties (AUROC {found[1]:.3f}), all-tied (0.5) "
            f"and a single positive ({found[5]:.3f})")


@exercise("11.2", "discrete mutual information", reference=metrics.mutual_information)
def check_mutual_information(fn: Callable[..., float]) -> str:
    g = torch.Generator().manual_seed(112)
    a = torch.randint(0, 6, (3000,), generator=g)
    b = (a + torch.randint(0, 3, (3000,), generator=g)) % 6
    c = torch.randint(0, 4, (3000,), generator=g) * 7 + 100  # labels 100, 107, 114, 121
    cases = [
        ("a noisy copy: b = a + noise (mod 6)", a, b),
        ("independent variables (MI close to 0, not exactly)", a, c),
        ("a with itself (MI = H(a))", a, a),
        ("a deterministic function, a // 2", a, a // 2),
        ("a constant (MI = 0)", a, torch.full_like(a, 5)),
        ("non-contiguous labels and a negative one", torch.tensor([-1, 100, 100, 7, 7, 7]),
         torch.tensor([0, 1, 1, 2, 2, 0])),
        ("one sample", torch.tensor([3]), torch.tensor([4])),
    ]
    found = []
    for name, u, v in cases:
        yours = fn(u.clone(), v.clone())
        expect_close(f"I(a; b) for {name}", yours, metrics.mutual_information(u, v), atol=1e-9, rtol=1e-9)
        found.append(float(yours))
    return (f"7 cases match: I(a; a) = H(a) = {found[2]:.4f} nats, a noisy copy {found[0]:.4f}, "
            f"independent {found[1]:.4f}, a constant 0")


@exercise("11.3", "the conditional ELBO with one-hot labels", reference=vv.cvae_elbo)
def check_cvae_elbo(fn: Callable[..., torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(113)
    cases = [
        ("8x8 images, 4 classes, latent 3, batch 6", vv.CondVAEConfig.tiny(num_classes=4), 6),
        ("28x28 images, 10 classes, latent 5, batch 3", vv.CondVAEConfig(latent_dim=5, hidden=(32,), num_classes=10), 3),
        ("a batch of one, 2 classes", vv.CondVAEConfig(image_size=6, latent_dim=2, hidden=(8, 8), num_classes=2), 1),
    ]
    worst = 0.0
    for name, cfg, b in cases:
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        model = vv.CVAE(cfg).double()
        x = torch.rand(b, cfg.channels, cfg.image_size, cfg.image_size, generator=g, dtype=torch.float64)
        x[0] = (x[0] > 0.5).double()  # binary and grey images alike
        y = torch.randint(0, cfg.num_classes, (b,), generator=g)
        eps = torch.randn(b, cfg.latent_dim, generator=g, dtype=torch.float64)
        with torch.no_grad():
            expected = vv.cvae_elbo(x, y, model.encoder, model.decoder, eps, cfg.num_classes)
            yours = fn(x.clone(), y.clone(), model.encoder, model.decoder, eps.clone(), cfg.num_classes)
        worst = max(worst, expect_close(f"ELBO per example for {name}", yours, expected, atol=1e-6, rtol=1e-6))
    return f"3 tiny CVAEs (incl. a batch of one) match companion.vae_variants.cvae_elbo (max error {worst:.1e} nats)"
