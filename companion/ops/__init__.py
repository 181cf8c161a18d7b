"""From-scratch convolution and attention, checked against ``torch.nn.functional``.

What is here, and where the course uses it (one submodule per part, read in this order; every name is
imported here, so ``ops.conv2d`` works without naming the submodule):

* ``ops.checks``: the argument checks every public function calls first.
* ``ops.shapes`` — ``conv_output_size`` / ``conv_transpose_output_size``: the shape arithmetic (chapter 03).
* ``ops.im2col`` — im2col, col2im, and the autograd Functions ``Conv2dFunction`` (a hand-written backward whose
  input gradient is a col2im) and ``ConvTranspose2dFunction`` (chapter 03).
* ``ops.conv`` — ``conv2d_loops``: a readable convolution with Python loops over output positions;
  ``conv2d``: the fast version, im2col + one matrix multiply; ``conv_transpose2d``: the adjoint of ``conv2d``;
  its forward *is* the input-gradient of a convolution, and its backward is a convolution (chapter 03; used
  again by the decoders and generators of chapters 09 and 14).
* ``ops.attention`` — ``attention_weights`` / ``scaled_dot_product_attention``: softmax(QK^T / sqrt(E)) V
  (chapter 08, vision transformers).

Every function takes and returns ordinary tensors, so it can be dropped into an ``nn.Module``
in place of its ``torch.nn.functional`` counterpart. Only ``torch`` is imported. Introduced in chapter 03.
"""

from .attention import attention_weights, scaled_dot_product_attention
from .conv import conv2d, conv2d_loops, conv_transpose2d
from .im2col import Conv2dFunction, ConvTranspose2dFunction
from .shapes import conv_output_size, conv_transpose_output_size

__all__ = [
    "Conv2dFunction",
    "ConvTranspose2dFunction",
    "attention_weights",
    "conv2d",
    "conv2d_loops",
    "conv_output_size",
    "conv_transpose2d",
    "conv_transpose_output_size",
    "scaled_dot_product_attention",
]
