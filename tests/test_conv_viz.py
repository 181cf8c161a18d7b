"""companion.conv_viz: every counting helper against PyTorch's own convolution (or autograd), plus bad inputs."""

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from companion import conv_viz

SETTINGS = [  # (input H, W), kernel, stride, padding, dilation
    ((5, 5), 3, 1, 0, 1),
    ((7, 6), 3, 2, 1, 1),
    ((9, 8), (3, 2), (2, 1), (1, 0), (2, 1)),
    ((6, 7), 1, 3, 2, 1),
    ((4, 4), 4, 1, 0, 1),
]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("size", "k", "s", "p", "d"), SETTINGS)
def test_footprint_matches_autograd(size, k, s, p, d):
    """The input pixels an output pixel depends on are exactly where its gradient is non-zero."""
    kk = (k, k) if isinstance(k, int) else k
    pp = (p, p) if isinstance(p, int) else p
    x = torch.zeros(1, 1, *size, requires_grad=True)
    y = F.conv2d(F.pad(x, (pp[1], pp[1], pp[0], pp[0]), value=0.0), torch.ones(1, 1, *kk), stride=s, dilation=d)
    for h, w in itertools.product(range(y.shape[2]), range(y.shape[3])):
        (g,) = torch.autograd.grad(y[0, 0, h, w], x, retain_graph=True)
        fp = conv_viz.footprint(size, (h, w), k, s, p, d)
        assert fp.shape == (size[0] + 2 * pp[0], size[1] + 2 * pp[1])
        inner = fp[pp[0] : pp[0] + size[0], pp[1] : pp[1] + size[1]]
        assert torch.equal(inner.bool(), g[0, 0] != 0)
        assert int(fp.sum()) == kk[0] * kk[1]  # every tap lands somewhere on the padded canvas


def test_tap_positions_formula_and_footprint_errors():
    taps = conv_viz.tap_positions((1, 2), 3, stride=2, padding=1, dilation=2)
    assert taps.shape == (3, 3, 2)
    assert taps[0, 0].tolist() == [1, 3] and taps[2, 2].tolist() == [5, 7]
    with pytest.raises(ValueError, match="outside"):
        conv_viz.footprint(5, (3, 0), 3)
    with pytest.raises(ValueError, match="does not fit"):
        conv_viz.footprint(2, (0, 0), 3)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        conv_viz.footprint(5, (0, 0), 3, stride=0)


@pytest.mark.parametrize(("c_in", "c_out", "groups"), [(4, 6, 1), (4, 6, 2), (4, 4, 4), (6, 12, 3)])
def test_connectivity_matches_autograd(c_in, c_out, groups):
    w = torch.randn(c_out, c_in // groups, 3, 3, generator=_gen())
    x = torch.randn(1, c_in, 5, 5, generator=_gen(1), requires_grad=True)
    y = F.conv2d(x, w, groups=groups)
    conn = conv_viz.connectivity(c_in, c_out, groups)
    assert conn.shape == (c_out, c_in) and int(conn.sum()) == c_out * c_in // groups
    for o in range(c_out):
        (g,) = torch.autograd.grad(y[0, o].sum(), x, retain_graph=True)
        assert torch.equal(g[0].abs().sum(dim=(1, 2)) > 0, conn[o])


def test_connectivity_errors():
    with pytest.raises(ValueError, match="divisible"):
        conv_viz.connectivity(4, 6, 4)
    with pytest.raises(ValueError, match="positive"):
        conv_viz.connectivity(0, 6, 1)


@pytest.mark.parametrize(("size", "k", "s", "p", "d"), SETTINGS)
def test_im2col_matches_unfold(size, k, s, p, d):
    x = torch.randn(2, 3, *size, generator=_gen())
    cols = conv_viz.im2col(x, k, s, p, d)
    ref = F.unfold(x, k, dilation=d, padding=p, stride=s)
    assert torch.equal(cols, ref)
    assert torch.equal(conv_viz.im2col(x[1], k, s, p, d), ref[1])  # unbatched


def test_im2col_times_weight_is_conv2d():
    x, w = torch.randn(2, 3, 8, 7, generator=_gen()), torch.randn(5, 3, 3, 3, generator=_gen(1))
    y = (w.reshape(5, -1) @ conv_viz.im2col(x, 3, 2, 1)).reshape(2, 5, 4, 4)
    torch.testing.assert_close(y, F.conv2d(x, w, stride=2, padding=1))


def test_im2col_errors():
    with pytest.raises(ValueError, match="does not fit"):
        conv_viz.im2col(torch.zeros(1, 2, 2), 3)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        conv_viz.im2col(torch.zeros(2, 2), 1)


@pytest.mark.parametrize(("size", "k", "s", "p", "d"), SETTINGS)
def test_conv_matrix_is_conv2d_and_its_transpose_is_conv_transpose2d(size, k, s, p, d):
    kk = (k, k) if isinstance(k, int) else k
    w = torch.randn(2, 3, *kk, generator=_gen(), dtype=torch.float64)
    x = torch.randn(3, *size, generator=_gen(1), dtype=torch.float64)
    A = conv_viz.conv_matrix(w, size, s, p, d)
    y = F.conv2d(x[None], w, stride=s, padding=p, dilation=d)[0]
    assert A.shape == (y.numel(), x.numel())
    torch.testing.assert_close(A @ x.flatten(), y.flatten())
    g = torch.randn(y.shape, generator=_gen(2), dtype=torch.float64)
    # output_padding: the rows/columns at the end that a strided convolution never reads (always < stride)
    pair = lambda v: (v, v) if isinstance(v, int) else v
    out_pad = tuple((size[a] + 2 * pair(p)[a] - pair(d)[a] * (kk[a] - 1) - 1) % pair(s)[a] for a in (0, 1))
    xt = F.conv_transpose2d(g[None], w, stride=s, padding=p, dilation=d, output_padding=out_pad)[0]
    assert xt.shape == x.shape
    torch.testing.assert_close(A.T @ g.flatten(), xt.flatten())


@pytest.mark.parametrize(("size", "k", "s", "p"), [((3, 3), 3, 2, 0), ((4, 5), 4, 2, 1), ((5, 4), (3, 2), (1, 3), 0)])
def test_transposed_overlap_matches_conv_transpose_of_ones(size, k, s, p):
    kk = (k, k) if isinstance(k, int) else k
    counts = conv_viz.transposed_overlap(size, k, s, p)
    ref = F.conv_transpose2d(torch.ones(1, 1, *size), torch.ones(1, 1, *kk), stride=s, padding=p)[0, 0]
    assert torch.equal(counts, ref.long())
    with pytest.raises(ValueError, match="empty"):
        conv_viz.transposed_overlap(1, 1, 1, 1)


@pytest.mark.parametrize(("size", "k"), [((6, 7), (3, 2)), ((5, 5), (1, 1)), ((4, 6), (4, 6))])
def test_weight_grad_2d_matches_autograd(size, k):
    x = torch.randn(*size, generator=_gen(), dtype=torch.float64)
    w = torch.randn(*k, generator=_gen(1), dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x[None, None], w[None, None])[0, 0]
    g = torch.randn(y.shape, generator=_gen(2), dtype=torch.float64)
    (ref,) = torch.autograd.grad((y * g).sum(), w)
    torch.testing.assert_close(conv_viz.weight_grad_2d(x, g), ref)
    with pytest.raises(ValueError, match="larger"):
        conv_viz.weight_grad_2d(torch.zeros(2, 2), torch.zeros(3, 3))


def test_benchmark_returns_a_plausible_time():
    t = conv_viz.benchmark(lambda: sum(range(1000)), repeats=2, min_time=0.001)
    assert 0 < t < 0.1
    with pytest.raises(ValueError):
        conv_viz.benchmark(lambda: None, repeats=0)


def test_drawings_run():
    fig, axes = plt.subplots(1, 3)
    assert conv_viz.draw_conv(axes[0], 5, 3, 2, 1, 1, out_positions=[(0, 0), (0, 1)], title="s=2") is axes[0]
    assert conv_viz.draw_groups(axes[1], 4, 4, 2) is axes[1]
    assert conv_viz.show_matrix(axes[2], torch.arange(6.0).reshape(2, 3), title="m") is axes[2]
    conv_viz.show_matrix(axes[2], torch.tensor([[-1.0, 2.0]]), cmap="RdBu_r", symmetric=True)
    assert axes[2].images[-1].get_clim() == (-2.0, 2.0)
    patches = axes[0].patches
    assert sum(p.get_hatch() == "///" for p in patches) == 7 * 7 - 5 * 5  # the padding ring of a 5x5 input, p=1
    with pytest.raises(ValueError, match="2-D"):
        conv_viz.show_matrix(axes[2], torch.zeros(3))
    plt.close(fig)
