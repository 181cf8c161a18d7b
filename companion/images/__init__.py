"""Images as tensors: dtypes, layouts, colour spaces, histograms, resampling, filtering and aliasing.

Every function here is pure (no state, no in-place changes to its input) and works on float images laid out
the PyTorch way, channels first:

* one image ``[C, H, W]`` or a batch ``[N, C, H, W]`` (``C = 1`` grayscale, ``C = 3`` RGB), values in ``[0, 1]``;
* 8-bit images (``torch.uint8``, values ``0..255``) only enter and leave through :func:`to_float` /
  :func:`to_uint8`.

Sections, in the order chapter 01 uses them, one submodule each (every name is imported here, so
``images.rgb_to_gray`` works without naming the submodule):

1. dtypes and layouts (``images.dtypes``) — ``to_float``, ``to_uint8``, ``hwc_to_chw``, ``chw_to_hwc``
2. colour spaces (``images.colour``) — ``luma_weights``, ``rgb_to_gray``, ``rgb_to_hsv`` / ``hsv_to_rgb``,
   ``rgb_to_ycbcr`` / ``ycbcr_to_rgb``
3. histograms (``images.colour``) — ``histogram``, ``equalize``
4. resampling (``images.resample``) — ``decimate``, ``resize_nearest``, ``resize_bilinear``, ``downsample_area``,
   ``upsample``
5. filtering (``images.filters``) — ``box_kernel``, ``gaussian_kernel1d``, ``gaussian_kernel``, ``filter2d``,
   ``filter2d_direct``, ``blur``, ``sobel``, ``sobel_magnitude``
6. aliasing (``images.aliasing``) — ``zone_plate``, ``gaussian_frequency_response``, ``antialias_sigma``,
   ``downsample``, ``ideal_lowpass``, ``aliased_fraction``, ``aliasing_error``

Only ``torch`` is imported. Introduced in chapter 01.
"""

from .aliasing import (
    aliased_fraction,
    aliasing_error,
    antialias_sigma,
    downsample,
    gaussian_frequency_response,
    ideal_lowpass,
    zone_plate,
)
from .colour import (
    LUMA_WEIGHTS,
    PRIMARIES,
    equalize,
    histogram,
    hsv_to_rgb,
    luma_weights,
    rgb_to_gray,
    rgb_to_hsv,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from .dtypes import chw_to_hwc, hwc_to_chw, to_float, to_uint8
from .filters import (
    blur,
    box_kernel,
    filter2d,
    filter2d_direct,
    gaussian_kernel,
    gaussian_kernel1d,
    sobel,
    sobel_magnitude,
)
from .resample import decimate, downsample_area, resize_bilinear, resize_nearest, upsample

__all__ = [
    "LUMA_WEIGHTS",
    "PRIMARIES",
    "aliased_fraction",
    "aliasing_error",
    "antialias_sigma",
    "blur",
    "box_kernel",
    "chw_to_hwc",
    "decimate",
    "downsample",
    "downsample_area",
    "equalize",
    "filter2d",
    "filter2d_direct",
    "gaussian_frequency_response",
    "gaussian_kernel",
    "gaussian_kernel1d",
    "histogram",
    "hsv_to_rgb",
    "hwc_to_chw",
    "ideal_lowpass",
    "luma_weights",
    "resize_bilinear",
    "resize_nearest",
    "rgb_to_gray",
    "rgb_to_hsv",
    "rgb_to_ycbcr",
    "sobel",
    "sobel_magnitude",
    "to_float",
    "to_uint8",
    "upsample",
    "ycbcr_to_rgb",
    "zone_plate",
]
