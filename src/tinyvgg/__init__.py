"""tinyvgg: VGG from scratch, with hand-written backward passes, on NumPy and CuPy.

Start with :mod:`tinyvgg.layers` (the layers), :mod:`tinyvgg.im2col` (convolution
as a matrix multiply) and :mod:`tinyvgg.gradcheck` (the proof that each backward
pass is right). Backends live in :mod:`tinyvgg.backend`.
"""
__version__ = "0.1.0"
