"""Data sets and mini-batches: the ``--data`` sources and the batch loader.

Three sources, one interface (``len(ds)``, ``ds.labels``, ``ds.class_names``,
``ds.load(indices) -> uint8 (n, H, W, 3)``, ``ds.channel_stats()``):

- :func:`make_shapes`: the built-in data set, ten classes of coloured geometric
  shapes drawn from a seed; no download. A linear model cannot solve it (the
  shapes move, grow and change colour); a small VGG can. Its harder sibling, the
  digits of :func:`tinyvgg.data.glyphs.make_glyphs`, is opened the same way.
- :class:`ImageFolder`: one sub-folder per class, like Keras'
  ``flow_from_directory``; images decoded, converted to RGB and resized on
  demand, with a bounded cache.
- :func:`load_cifar10`: CIFAR-10's "python version" batch files, read with an
  unpickler that refuses anything but plain data.

:class:`BatchLoader` turns a data set into shuffled, augmented, normalized
float32 mini-batches on the model's backend. :func:`open_dataset` parses the
CLI's ``--data`` value.
"""
from ..errors import DataError
from .arrays import ArrayDataset, Subset, split
from .augment import augment_batch
from .catalog import BUILT_IN, BUILT_IN_MAX_BYTES, absolute_spec, open_dataset
from .cifar10 import load_cifar10, resize_images
from .folders import IMAGE_EXTENSIONS, ImageFolder, decode_image, is_regular_file
from .glyphs import GLYPH_CLASSES, make_glyphs
from .loader import BatchLoader
from .shapes import SHAPE_CLASSES, make_shapes

__all__ = ["DataError", "ArrayDataset", "Subset", "split", "augment_batch", "BUILT_IN", "BUILT_IN_MAX_BYTES",
           "absolute_spec", "open_dataset", "load_cifar10", "resize_images", "IMAGE_EXTENSIONS", "ImageFolder",
           "decode_image", "is_regular_file", "GLYPH_CLASSES", "make_glyphs", "BatchLoader", "SHAPE_CLASSES",
           "make_shapes"]
