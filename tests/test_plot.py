import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from companion import plot  # noqa: E402
from companion.train import History  # noqa: E402


def teardown_function():
    plt.close("all")


def test_make_grid_shapes():
    g = plot.make_grid(torch.rand(10, 1, 8, 8), nrow=4, padding=2)
    assert g.shape == (1, 3 * 10 + 2, 4 * 10 + 2)
    assert plot.make_grid(torch.rand(3, 8, 8), nrow=8).shape == (3, 12, 12)  # one RGB image
    assert plot.make_grid(torch.rand(5, 8, 8), nrow=8).shape == (1, 12, 5 * 10 + 2)  # [N,H,W]
    u8 = plot.make_grid(torch.full((1, 1, 4, 4), 255, dtype=torch.uint8), padding=0)
    assert torch.all(u8 == 1.0)


def test_bad_images_are_clear_errors():
    with pytest.raises(ValueError, match="got shape"):
        plot.make_grid(torch.rand(1, 1, 1, 4, 4))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        plot.make_grid(torch.rand(2, 5, 4, 4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        plot.make_grid([[0.0]])
    with pytest.raises(ValueError, match="labels"):
        plot.show_images(torch.rand(3, 1, 4, 4), labels=["a"])
    with pytest.raises(ValueError, match="titles"):
        plot.compare([torch.rand(2, 1, 4, 4)], ["a", "b"])


def test_figures():
    plot.use_style()
    assert plot.show_images(torch.rand(6, 1, 8, 8), nrow=3, title="t").axes
    assert len(plot.show_images(torch.rand(4, 3, 8, 8), labels=list("abcd"), nrow=3).axes) == 6
    assert len(plot.compare([torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)], ["in", "out"]).axes) == 2
    assert len(plot.interpolation_strip(torch.rand(2, 5, 1, 8, 8), row_labels=["a", "b"]).axes) == 2
    with pytest.raises(ValueError):
        plot.interpolation_strip(torch.rand(8, 8))
    h = History(train=[{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}], eval=[{"step": 2, "acc": 0.5}])
    assert plot.plot_history(h, keys=["loss"], eval_keys=["acc"], smooth_weight=0.5, logy=True).axes
    fig = plot.plot_curves({"a": ([0, 1], [1, 2])}, title="c")
    assert fig.axes[0].get_title() == "c"
    with pytest.raises(ValueError, match="curve 'a'"):
        plot.plot_curves({"a": ([0, 1], [1])})
