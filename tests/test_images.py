"""companion.images: closed forms, round trips, agreement with PyTorch / NumPy / matplotlib / PIL / SciPy."""

import math

import matplotlib.colors as mcolors
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from companion import images as im


@pytest.fixture
def rgb():
    return torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- dtypes and layouts


def test_uint8_float_round_trip_is_exact_for_every_byte():
    v = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    x = im.to_float(v)
    assert x.dtype == torch.float32 and x.min() == 0 and x.max() == 1
    assert torch.equal(im.to_uint8(x), v)


def test_to_uint8_rounds_and_refuses_out_of_range():
    assert im.to_uint8(torch.tensor([0.0, 0.499 / 255, 0.501 / 255, 1.0])).tolist() == [0, 0, 1, 255]
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\].*max 1.5.*clamp=True"):
        im.to_uint8(torch.tensor([0.0, 1.5]))
    with pytest.raises(ValueError, match="values must lie"):
        im.to_uint8(torch.tensor([float("nan")]))
    assert im.to_uint8(torch.tensor([-0.5, 1.5]), clamp=True).tolist() == [0, 255]
    with pytest.raises(ValueError, match="expected a floating-point image.*torch.uint8"):
        im.to_uint8(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="expected a uint8 image.*torch.float32"):
        im.to_float(torch.zeros(3))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        im.to_float(np.zeros(3, dtype=np.uint8))


def test_layouts_are_inverse_views():
    x = torch.rand(4, 5, 3)
    chw = im.hwc_to_chw(x)
    assert chw.shape == (3, 4, 5) and chw.data_ptr() == x.data_ptr()
    assert torch.equal(im.chw_to_hwc(chw), x)
    assert im.hwc_to_chw(torch.rand(2, 4, 5, 1)).shape == (2, 1, 4, 5)
    with pytest.raises(ValueError, match=r"\[H, W, C\].*got \[3, 4, 5\]"):
        im.hwc_to_chw(torch.rand(3, 4, 5))
    with pytest.raises(ValueError, match=r"\[C, H, W\].*got \[4, 5\]"):
        im.chw_to_hwc(torch.rand(4, 5))


# ----------------------------------------------------------------------------- colour


def test_luma_weights_derived_from_primaries_match_the_standards():
    for std in ("601", "709"):
        k = im.luma_weights(im.PRIMARIES[std])
        assert math.isclose(float(k.sum()), 1.0, abs_tol=1e-12)
        assert torch.allclose(k, torch.tensor(im.LUMA_WEIGHTS[std], dtype=torch.float64), atol=1e-3)
    with pytest.raises(ValueError, match="missing"):
        im.luma_weights({"r": (0.6, 0.3)})


def test_rgb_to_gray_closed_forms_and_pil(rgb):
    eye = torch.eye(3)[:, :, None, None].expand(3, 3, 2, 2)  # pure red, green, blue images
    for std in ("601", "709"):
        g = im.rgb_to_gray(eye, std)
        assert g.shape == (3, 1, 2, 2)
        assert torch.allclose(g[:, 0, 0, 0], torch.tensor(im.LUMA_WEIGHTS[std]))
    grey = torch.full((3, 4, 4), 0.37)
    assert torch.allclose(im.rgb_to_gray(grey), grey[:1])
    assert im.rgb_to_gray(rgb).shape == (2, 1, 13, 17)
    arr = (np.random.default_rng(0).random((9, 11, 3)) * 255).astype(np.uint8)
    pil = np.asarray(Image.fromarray(arr).convert("L"), dtype=np.float64)
    ours = im.rgb_to_gray(im.to_float(torch.from_numpy(arr)).permute(2, 0, 1))[0].double().numpy() * 255
    assert np.abs(ours - pil).max() <= 1.0  # PIL rounds with integer arithmetic
    with pytest.raises(ValueError, match=r"3 channel.*\[4, 5, 3\].*hwc_to_chw"):
        im.rgb_to_gray(torch.rand(4, 5, 3))
    with pytest.raises(ValueError, match="standard must be one of"):
        im.rgb_to_gray(rgb, "2020")
    with pytest.raises(ValueError, match=r"floating-point.*torch.uint8"):
        im.rgb_to_gray(torch.zeros(3, 2, 2, dtype=torch.uint8))


def test_hsv_matches_matplotlib_and_round_trips(rgb):
    # include the edge cases: black, white, greys (chroma 0) and ties between channels
    special = torch.tensor([[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 0, 0]])
    x = torch.cat([rgb.permute(0, 2, 3, 1).reshape(-1, 3), special.float()])  # [P, 3]
    img = x.T.reshape(3, 1, -1)  # [3, 1, P]
    ours = im.rgb_to_hsv(img).reshape(3, -1).T
    ref = torch.from_numpy(mcolors.rgb_to_hsv(x.numpy()))
    assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.allclose(im.hsv_to_rgb(im.rgb_to_hsv(rgb)), rgb, atol=1e-5)
    hsv = torch.rand(3, 6, 7)
    ref_rgb = torch.from_numpy(mcolors.hsv_to_rgb(hsv.permute(1, 2, 0).numpy())).permute(2, 0, 1)
    assert torch.allclose(im.hsv_to_rgb(hsv), ref_rgb, atol=1e-6)
    with pytest.raises(ValueError, match="3 channel"):
        im.rgb_to_hsv(torch.rand(1, 4, 4))


def test_ycbcr_round_trip_and_pil(rgb):
    for std in ("601", "709"):
        ycc = im.rgb_to_ycbcr(rgb, std)
        assert torch.allclose(ycc[:, :1], im.rgb_to_gray(rgb, std), atol=1e-6)  # Y is the luma
        assert (im.ycbcr_to_rgb(ycc, std) - rgb).abs().max() < 1e-5
    grey = torch.full((3, 2, 2), 0.6)
    assert torch.allclose(im.rgb_to_ycbcr(grey), torch.tensor([0.6, 0.5, 0.5])[:, None, None])
    arr = (np.random.default_rng(1).random((8, 10, 3)) * 255).astype(np.uint8)
    pil = np.asarray(Image.fromarray(arr).convert("YCbCr"), dtype=np.float64)
    ours = im.rgb_to_ycbcr(im.to_float(torch.from_numpy(arr)).permute(2, 0, 1)).permute(1, 2, 0).double().numpy()
    assert np.abs(ours * 255 - pil).max() <= 1.0


# ----------------------------------------------------------------------------- histograms


def test_histogram_matches_numpy():
    x = torch.randint(0, 256, (2, 3, 9, 10), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    h = im.histogram(im.to_float(x))
    assert h.shape == (3, 256) and h.dtype == torch.int64
    for c in range(3):
        ref, _ = np.histogram(x[:, c].numpy(), bins=256, range=(0, 256))
        assert h[c].tolist() == ref.tolist()
    y = torch.rand(1, 50, 50)
    ref, _ = np.histogram(y.numpy(), bins=10, range=(0, 1))
    assert im.histogram(y, bins=10)[0].tolist() == ref.tolist()
    assert int(im.histogram(torch.ones(1, 2, 2), bins=4)[0, -1]) == 4  # 1.0 falls in the last bin
    with pytest.raises(ValueError, match="bins"):
        im.histogram(y, bins=0)


def test_equalize_flattens_the_cumulative_histogram():
    g = torch.Generator().manual_seed(3)
    u = torch.rand(2, 1, 64, 64, generator=g)
    dark = 0.1 + 0.15 * (u[0] + u[1])  # crowded into [0.1, 0.4], peaked at 0.25
    dark = im.to_float(im.to_uint8(dark))
    eq = im.equalize(dark)
    assert eq.shape == dark.shape and eq.min() == 0 and eq.max() == 1
    # monotone: sorting the input sorts the output
    order = dark.flatten().argsort(stable=True)
    assert bool((eq.flatten()[order].diff() >= 0).all())
    # the output's empirical CDF is close to the identity (uniform histogram)
    cdf = im.histogram(eq, bins=16)[0].cumsum(0).double() / eq.numel()
    assert (cdf - torch.linspace(1 / 16, 1, 16, dtype=torch.float64)).abs().max() < 0.05
    # constant channels are returned unchanged; a batch is equalised image by image
    const = torch.full((1, 64, 64), 0.3)
    assert torch.equal(im.equalize(const), const)
    batch = torch.stack([dark, const])
    assert torch.equal(im.equalize(batch), torch.stack([eq, const]))


# ----------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("size", [(5, 7), (40, 50), (13, 17), (3, 30), (26, 34)])
def test_resize_matches_f_interpolate(rgb, size):
    ref_b = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False)
    ref_n = F.interpolate(rgb, size=size, mode="nearest")
    assert (im.resize_bilinear(rgb, size) - ref_b).abs().max() < 1e-5
    assert torch.equal(im.resize_nearest(rgb, size), ref_n)
    assert torch.equal(im.resize_nearest(rgb[0], size), ref_n[0])  # an unbatched image works too


def test_decimate_area_and_upsample(rgb):
    x = torch.rand(2, 3, 16, 24)
    assert torch.equal(im.decimate(x, 4), x[..., ::4, ::4])
    assert torch.equal(im.decimate(x, 4), F.interpolate(x, scale_factor=0.25, mode="nearest"))
    assert (im.downsample_area(x, 4) - F.avg_pool2d(x, 4)).abs().max() < 1e-6
    assert torch.equal(im.downsample_area(x, 1), x)
    # bilinear by exactly 2 averages 2x2 blocks; by 4 it only looks at the middle 2x2 of each 4x4 block
    assert (im.resize_bilinear(x, (8, 12)) - F.avg_pool2d(x, 2)).abs().max() < 1e-6
    assert (im.resize_bilinear(x, (4, 6)) - F.avg_pool2d(x[..., 1:-1, 1:-1], 2, stride=4)).abs().max() < 1e-6
    up = im.upsample(x, 3)
    assert up.shape == (2, 3, 48, 72) and torch.equal(im.decimate(up, 3), x)
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert (im.upsample(x, 2, "bilinear") - ref).abs().max() < 1e-5
    with pytest.raises(ValueError, match=r"divisible by factor 4.*\[2, 3, 13, 17\].*crop to 12x16"):
        im.downsample_area(rgb, 4)
    with pytest.raises(ValueError, match="factor must be a positive int"):
        im.decimate(x, 0)
    with pytest.raises(ValueError, match="mode"):
        im.upsample(x, 2, "bicubic")
    with pytest.raises(ValueError, match="size must be"):
        im.resize_bilinear(x, (0, 3))
    with pytest.raises(ValueError, match=r"\[C, H, W\] or a batch.*\[16, 24\]"):
        im.resize_nearest(x[0, 0], 8)


# ----------------------------------------------------------------------------- filtering


def test_gaussian_kernels():
    k = im.gaussian_kernel(1.0, 5)
    assert k.shape == (5, 5) and math.isclose(float(k.sum()), 1.0, rel_tol=1e-6)
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))
    g = im.gaussian_kernel1d(1.0, 5)
    assert torch.allclose(k, g[:, None] * g[None, :], atol=1e-7)  # separable
    e = torch.exp(-torch.tensor([4.0, 1.0, 0.0, 1.0, 4.0]) / 2)
    assert torch.allclose(g, e / e.sum())
    assert im.gaussian_kernel(2.0).shape == (13, 13)  # default size 2·ceil(3σ)+1
    assert torch.equal(im.gaussian_kernel(3.0, 1), torch.ones(1, 1))
    assert torch.allclose(im.box_kernel(3), torch.full((3, 3), 1 / 9))
    for bad in (dict(sigma=0.0), dict(sigma=-1.0), dict(sigma=1.0, size=4), dict(sigma=1.0, size=0)):
        with pytest.raises(ValueError, match="sigma must be|size must be"):
            im.gaussian_kernel(**bad)


def test_filter2d_matches_the_loop_scipy_and_conv2d(rgb):
    from scipy import ndimage

    k = torch.rand(3, 5, generator=torch.Generator().manual_seed(4))
    fast, slow = im.filter2d(rgb, k), im.filter2d_direct(rgb, k)
    assert (fast - slow).abs().max() < 1e-5
    ref = ndimage.correlate(rgb.double().numpy(), k.double().numpy()[None, None], mode="mirror")
    assert np.abs(fast.double().numpy() - ref).max() < 1e-5  # scipy's "mirror" is torch's "reflect"
    zeros = im.filter2d(rgb, k, padding="zeros")
    conv = F.conv2d(rgb.reshape(-1, 1, 13, 17), k[None, None], padding=(1, 2)).reshape(rgb.shape)
    assert (zeros - conv).abs().max() < 1e-5
    for mode in ("replicate", "circular"):
        assert (im.filter2d(rgb, k, mode) - im.filter2d_direct(rgb, k, mode)).abs().max() < 1e-5
    delta = torch.zeros(1, 7, 7)
    delta[0, 3, 3] = 1
    assert torch.allclose(im.filter2d(delta, k, "zeros")[0, 2:5, 1:6], k.flip(0, 1))  # impulse → flipped kernel
    with pytest.raises(ValueError, match=r"odd.*\[2, 3\]"):
        im.filter2d(rgb, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"2-D kernel"):
        im.filter2d(rgb, torch.ones(1, 3, 3))
    with pytest.raises(ValueError, match="radius"):
        im.filter2d(torch.rand(1, 3, 3), torch.ones(7, 7))
    with pytest.raises(ValueError, match="padding must be"):
        im.filter2d(rgb, k, "mirror")


def test_blur_is_the_separable_gaussian_filter(rgb):
    from scipy import ndimage

    b = im.blur(rgb, 1.3)
    assert (b - im.filter2d(rgb, im.gaussian_kernel(1.3))).abs().max() < 1e-5
    ref = ndimage.gaussian_filter(rgb.double().numpy(), sigma=(0, 0, 1.3, 1.3), mode="mirror", truncate=3.0)
    assert np.abs(b.double().numpy() - ref).max() < 1e-4
    const = torch.full((1, 8, 8), 0.25)
    assert torch.allclose(im.blur(const, 2.0), const)  # weights sum to 1: flat images stay flat


def test_sobel_on_ramps_and_edges():
    rows, cols = torch.meshgrid(torch.arange(10.0), torch.arange(12.0), indexing="ij")
    ramp = (0.03 * cols - 0.02 * rows)[None]
    gx, gy = im.sobel(ramp)
    assert torch.allclose(gx[0, 1:-1, 1:-1], torch.full((8, 10), 0.03), atol=1e-6)
    assert torch.allclose(gy[0, 1:-1, 1:-1], torch.full((8, 10), -0.02), atol=1e-6)
    mag = im.sobel_magnitude(ramp)
    assert torch.allclose(mag[0, 1:-1, 1:-1], torch.full((8, 10), math.hypot(0.03, 0.02)), atol=1e-6)
    step = (cols >= 6).float()[None, None]  # a vertical edge
    m = im.sobel_magnitude(step)
    assert m.shape == step.shape and torch.allclose(m[0, 0, :, 5:7], torch.full((10, 2), 0.5))
    assert m[0, 0, :, :4].abs().max() == 0 and m[0, 0, :, 8:].abs().max() == 0


# ----------------------------------------------------------------------------- aliasing


def test_zone_plate_has_the_stated_local_frequency():
    zp = im.zone_plate(256, f_max=0.25)
    assert zp.shape == (1, 256, 256) and zp.min() >= 0 and zp.max() <= 1
    assert math.isclose(float(zp[0, 127, 127]), 1.0, abs_tol=1e-4)  # in phase at the centre
    # count the cycles along the middle row from the centre to the edge: ∫ f_max u / R du = f_max R / 2
    row = zp[0, 128, 128:].double() - 0.5
    crossings = int((row[:-1] * row[1:] < 0).sum())
    assert abs(crossings / 2 - 0.25 * 128 / 2) <= 1
    with pytest.raises(ValueError, match="size"):
        im.zone_plate(1)


def test_gaussian_frequency_response_matches_the_dft_of_the_kernel():
    sigma = 2.0
    g = im.gaussian_kernel1d(sigma, 41).double()
    freqs = torch.fft.rfftfreq(41, dtype=torch.float64)
    dft = torch.fft.rfft(torch.fft.ifftshift(g)).real
    assert (dft - im.gaussian_frequency_response(sigma, freqs)).abs().max() < 1e-3
    for f in (2, 4, 8):
        for eps in (0.5, 0.1):
            s = im.antialias_sigma(f, eps)
            assert math.isclose(float(im.gaussian_frequency_response(s, 1 / (2 * f))), eps, rel_tol=1e-9)
    assert math.isclose(im.antialias_sigma(4), 4 * math.sqrt(2 * math.log(2)) / math.pi)
    with pytest.raises(ValueError, match="attenuation"):
        im.antialias_sigma(2, 1.5)


def test_ideal_lowpass_keeps_dct_cosines_below_the_cutoff_only():
    n = 32
    i = torch.arange(n, dtype=torch.float64)
    # cos(π k (i + 1/2) / n) has frequency k / (2n) and is exactly periodic under the symmetric extension
    low = torch.cos(math.pi * 6 * (i + 0.5) / n)  # 6/64 cycles per pixel
    high = torch.cos(math.pi * 20 * (i + 0.5) / n)  # 20/64
    img = (low[None, :] + high[:, None])[None]  # low along W, high along H
    out = im.ideal_lowpass(img, 0.125)  # cutoff 8/64
    assert (out - low[None, None, :]).abs().max() < 1e-10
    assert (im.ideal_lowpass(img, 0.5) - img).abs().max() < 1e-10
    with pytest.raises(ValueError, match="cutoff"):
        im.ideal_lowpass(img, 0.7)


def test_alias_frequency_folds_as_predicted():
    n = 64
    i = torch.arange(n, dtype=torch.float64)
    x = torch.cos(2 * math.pi * 0.375 * i)[None, None, :].expand(1, 4, n)  # 0.375 cycles/pixel
    small = im.decimate(x, 2)[0, 0]  # the new grid holds <= 0.25 cycles per original pixel
    spec = torch.fft.rfft(small).abs()
    peak = int(spec.argmax()) / len(small) / 2  # in cycles per *original* pixel
    assert math.isclose(peak, 0.5 - 0.375)  # folded about the new Nyquist frequency 0.25


def test_antialiasing_reduces_aliasing_on_the_zone_plate():
    zp = im.zone_plate(64)
    for f in (2, 4):
        raw, blurred = im.aliased_fraction(zp, f), im.aliased_fraction(zp, f, "auto")
        assert 0 <= blurred < raw <= 1
        assert im.aliasing_error(zp, f, "auto") < im.aliasing_error(zp, f)
    assert im.aliased_fraction(zp, 1) == 0.0
    smooth = im.ideal_lowpass(zp, 0.1)
    assert im.aliased_fraction(smooth, 4) < 1e-12  # band-limited below 1/8: nothing to alias
    assert im.aliasing_error(smooth, 4) < 1e-6  # and decimation is exact
    assert im.downsample(zp, 4, "auto").shape == (1, 16, 16)
    assert torch.equal(im.downsample(zp, 4), im.decimate(zp, 4))
    with pytest.raises(ValueError, match="factor must be >= 2"):
        im.aliasing_error(zp, 1)
