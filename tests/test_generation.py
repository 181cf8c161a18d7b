"""``companion.generate``: every shipped generative checkpoint through one call, its refusals, its determinism."""

import pytest
import torch

import companion
from companion import ddpm, gan, generation, hub, scoreboard, vae, vae_variants
from companion.recipes import RECIPES
from companion.unet import UNetConfig

#: every shipped checkpoint that makes images (a VQ-VAE alone reconstructs; its prior generates)
GENERATIVE = sorted(n for n, r in RECIPES.items() if r.family in ("vae", "prior", "gan", "diffusion", "flow", "score"))




@pytest.mark.parametrize("name", GENERATIVE)
def test_every_shipped_generative_checkpoint_generates(name):
    if name == "betavae_shapes":
        with pytest.raises(TypeError, match="BetaSweep holds 3 β-VAEs"):
            companion.generate(name, 2)
        sweep = hub.load_model(name)
        x = companion.generate(sweep[sweep.betas[0]], 3, progress=False)
        assert x.shape == (3, 1, 32, 32)
        return
    kwargs = {"labels": [0, 1, 2]} if name in ("cvae_mnist", "cgan_mnist") else {"steps": 8} if name == "ddpm_mnist" else {"steps": 1} if name == "score_mnist" else {}
    if name.startswith(("fm_", "latent_", "speedrun_")):
        kwargs = {"labels": [0, 1, 2], "steps": 2}
    if name == "text_shapes":
        kwargs = {"prompt": "a large red circle at the top left", "steps": 2}
    x = companion.generate(name, 3, progress=False, **kwargs)
    assert x.shape == ((3, 3, 32, 32) if name == "text_shapes" else (3, 1, 28, 28)) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1 and torch.isfinite(x).all()
    again = companion.generate(name, 3, progress=False, **kwargs)
    assert torch.equal(x, again), "the same seed must give the same images"
    other = companion.generate(name, 3, seed=1, progress=False, **kwargs)
    assert not torch.equal(x, other)


def test_images_do_not_depend_on_the_batch_size():
    torch.manual_seed(0)
    g = gan.Generator(gan.DCGANConfig()).eval()
    a = companion.generate(g, 7, batch_size=7, progress=False)
    b = companion.generate(g, 7, batch_size=2, progress=False)
    assert torch.allclose(a, b, atol=1e-6)


def test_refusals_name_what_the_model_accepts():
    torch.manual_seed(0)
    g = gan.Generator(gan.DCGANConfig())
    with pytest.raises(ValueError, match=r"GAN generator takes no prompt=; it accepts none of"):
        companion.generate(g, 2, prompt="a seven")
    v = vae.VAE(vae.VAEConfig(latent_dim=4, hidden=(16,), arch="mlp"))
    with pytest.raises(ValueError, match=r"a VAE takes no sampler=, steps="):
        companion.generate(v, 2, steps=10, sampler="ddim")
    cv = vae_variants.CVAE(vae_variants.CondVAEConfig(image_size=28, channels=1, latent_dim=2, hidden=(16,),
                                                      num_classes=10))
    with pytest.raises(ValueError, match=r"needs labels="):
        companion.generate(cv, 2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\).*got 10"):
        companion.generate(cv, 2, labels=[3, 10])
    with pytest.raises(ValueError, match=r"one label or 2 labels"):
        companion.generate(cv, 2, labels=[1, 2, 3])
    with pytest.raises(ValueError, match=r"conditional VAE takes no guidance=; it accepts labels="):
        companion.generate(cv, 2, labels=1, guidance=2.0)
    assert companion.generate(cv, 4, labels=7, progress=False).shape == (4, 1, 28, 28)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        companion.generate(g, 0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        companion.generate(g, 2, batch_size=0)
    with pytest.raises(TypeError, match="must be a generative model"):
        companion.generate(torch.nn.Linear(2, 2), 2)
    with pytest.raises(TypeError, match="CodePrior draws code grids"):
        companion.generate(hub.load_model("vqvae_prior_mnist"), 2)


def test_generate_leaves_the_model_in_its_mode():
    g = gan.Generator(gan.DCGANConfig()).train()
    companion.generate(g, 2, progress=False)
    assert g.training


def test_a_later_family_registers_itself():
    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

    fam = generation.Family("toy", lambda m, n, y, g, o: torch.full((n, 1, 2, 2), 0.5) + 0 * m.w,
                            accepts=frozenset({"steps"}))
    generation.register(Flat, fam)
    try:
        assert torch.equal(companion.generate(Flat(), 2, steps=3, progress=False), torch.full((2, 1, 2, 2), 0.5))
    finally:
        generation.FAMILIES.remove((Flat, fam))


def test_a_ddpm_takes_a_sampler_and_steps_and_defaults_to_ancestral_at_full_T():
    torch.manual_seed(0)
    m = ddpm.DDPM(ddpm.DDPMConfig(unet=UNetConfig.tiny(), T=20))
    full = companion.generate(m, 2, progress=False)
    assert full.shape == (2, 1, 28, 28) and full.min() >= 0 and full.max() <= 1
    calls = []
    m.unet.register_forward_hook(lambda mod, i, o: calls.append(1))
    assert torch.equal(companion.generate(m, 2, progress=False), full), "the default is ancestral at all T steps"
    assert len(calls) == 20 == scoreboard.nfe(m)
    calls.clear()
    few = companion.generate(m, 2, steps=4, progress=False)
    assert len(calls) == 4 == scoreboard.nfe(m, 4) and not torch.equal(few, full)
    ddim = companion.generate(m, 2, sampler="ddim", steps=4, progress=False)
    assert torch.equal(ddim, companion.generate(m, 2, sampler="ddim", steps=4, progress=False))
    with pytest.raises(ValueError, match="a DDPM takes no labels=; it accepts sampler=, steps="):
        companion.generate(m, 2, labels=3)
    with pytest.raises(ValueError, match="sampler must be 'ancestral' or 'ddim'"):
        companion.generate(m, 2, sampler="euler", steps=2)
