"""companion.widgets: the latent explorer reacts to its sliders, and its static fallback draws a traversal."""

import io
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from companion import widgets  # noqa: E402


def teardown_function():
    plt.close("all")


def fake_decode(z: torch.Tensor) -> torch.Tensor:
    """A 'decoder' whose image is uniform grey at sigmoid(z0) with a bright row at a height set by z1."""
    b = z.shape[0]
    img = torch.sigmoid(z[:, 0]).view(b, 1, 1, 1).expand(b, 1, 28, 28).clone()
    rows = ((z[:, 1].clamp(-3, 3) + 3) / 6 * 27).round().long()
    img[torch.arange(b), 0, rows, :] = 1.0
    return img


def _png_pixels(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32)).flatten()


def test_to_png_roundtrip_and_scale():
    img = torch.zeros(1, 28, 28)
    img[0, 3, 5] = 1.0
    png = widgets.to_png(img, scale=2)
    pic = Image.open(io.BytesIO(png))
    assert pic.size == (56, 56)
    arr = torch.from_numpy(np.array(pic.convert("L"), dtype=np.int64))
    assert arr[6:8, 10:12].eq(255).all() and arr.sum() == 4 * 255
    assert widgets.to_png(torch.rand(28, 28), scale=1)[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="one image"):
        widgets.to_png(torch.rand(2, 2, 28, 28))
    with pytest.raises(ValueError, match="scale"):
        widgets.to_png(img, scale=0)


def test_explorer_builds_one_slider_per_dim_and_shows_the_base():
    base = torch.zeros(5)
    ex = widgets.latent_explorer(fake_decode, dims=[0, 1, 4], base=base, scale=2)
    assert isinstance(ex, widgets.LatentExplorer)
    assert [s.description for s in ex.sliders] == ["z[0]", "z[1]", "z[4]"]
    assert torch.equal(ex.current_z(), base[None])
    assert ex.image.value[:4] == b"\x89PNG" and ex.updates == 1
    assert "application/vnd.jupyter.widget-view+json" in ex._repr_mimebundle_()


def test_moving_a_slider_updates_the_image():
    ex = widgets.latent_explorer(fake_decode, dims=[0, 1], latent_dim=3, scale=1)
    before = ex.image.value
    ex.sliders[0].value = 2.5  # the observe callback fires and re-decodes
    assert ex.updates == 2
    assert ex.current_z()[0, 0].item() == pytest.approx(2.5)
    assert ex.image.value != before
    grey = torch.sigmoid(torch.tensor(2.5)).item() * 255
    pixels = _png_pixels(ex.image.value)
    assert pixels.median().item() == pytest.approx(grey, abs=1)
    # calling the handler directly (as a front end would) decodes again
    ex.sliders[1].value = -3.0
    ex._on_change({"name": "value", "new": -3.0})
    assert ex.updates == 4
    assert _png_pixels(ex.image.value).view(28, 28)[0].eq(255).all()  # the bright row moved to the top
    ex.reset()
    assert torch.equal(ex.current_z(), torch.zeros(1, 3))


def test_static_fallback_is_a_traversal_figure():
    fig = widgets.latent_explorer(fake_decode, dims=[0, 1], latent_dim=2, static=True, n_static=5,
                                  labels=["brightness", "row"], title="traversal")
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and [t.get_text() for t in ax.get_yticklabels()] == ["brightness", "row"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-3.0", "-1.5", "+0.0", "+1.5", "+3.0"]
    canvas = ax.images[0].get_array()
    assert canvas.shape == (2 * 30 + 2, 5 * 30 + 2)
    first, last = canvas[2:30, 2:30], canvas[2:30, 4 * 30 + 2:5 * 30]
    assert first.mean() < last.mean()  # the brightness row gets brighter from left to right
    torch.testing.assert_close(torch.from_numpy(np.asarray(first, dtype=np.float32)) / 255,
                               fake_decode(torch.tensor([[-3.0, 0.0]]))[0, 0], atol=1 / 255, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one"):
        widgets.latent_explorer(fake_decode, dims=[], latent_dim=2)
    with pytest.raises(ValueError, match="base"):
        widgets.latent_explorer(fake_decode, dims=[0])
    with pytest.raises(ValueError, match="out of range"):
        widgets.latent_explorer(fake_decode, dims=[3], latent_dim=2)
    with pytest.raises(ValueError, match="labels"):
        widgets.latent_explorer(fake_decode, dims=[0, 1], latent_dim=2, labels=["a"])
    with pytest.raises(ValueError, match="value_range"):
        widgets.latent_explorer(fake_decode, dims=[0], latent_dim=2, value_range=(1, -1))
    with pytest.raises(ValueError, match="must return"):
        widgets.latent_explorer(lambda z: torch.zeros(1, 28, 28).repeat(2, 1, 1), dims=[0], latent_dim=2)


def test_colab_manager_is_enabled_only_in_colab(monkeypatch):
    assert widgets.enable_colab_widgets() is False  # not in Colab
    calls = []

    class Output:
        @staticmethod
        def enable_custom_widget_manager():
            calls.append(True)

    colab = type(sys)("google.colab")
    colab.output = Output
    google = type(sys)("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert widgets.enable_colab_widgets() is True and calls == [True]
    widgets.latent_explorer(fake_decode, dims=[0], latent_dim=2, scale=1)
    assert calls == [True, True]
