"""The second built-in data set: digits drawn like photographs of characters.

``make_glyphs`` draws the digits 0-9 with the font that ships inside Pillow, at a
random position, size, rotation, slant, width and weight, in a random colour on
a random background (a colour gradient, a few stray strokes, noise), all from a
seed: the same seed gives the same images, and nothing is downloaded.

It is harder than :func:`~tinyvgg.data.shapes.make_shapes`: a digit is thin, so its
colour covers few pixels; a 6 turned by 25 degrees must still not be read as a 9;
and the stray strokes are drawn with the same pens as the digits. A small VGG
learns it in a few epochs; a linear classifier does not.

How one image is made: each digit is drawn once, large, into a grayscale
template (three stroke weights); every image then maps a template through one
affine transform (scale, width, slant, rotation, position) onto a canvas three
times the final size, which is shrunk with a box filter so that edges are
smooth, and used as the alpha mask of the digit's colour over the background.
"""
import numpy as np

from ..errors import DataError
from .arrays import ArrayDataset

GLYPH_CLASSES = tuple("0123456789")
TEMPLATE = 96          # side of a template, in pixels
WEIGHTS = (0, 2, 4)    # stroke widths of the templates: regular, bold, heavy
OVERSAMPLE = 3         # each image is drawn at 3x its size and shrunk: smooth edges


def _templates():
    """{(weight, class index): float32 (TEMPLATE, TEMPLATE) mask in [0, 1]} of every digit."""
    from PIL import Image, ImageDraw, ImageFont, features
    if not features.check("freetype2"):
        raise DataError("the glyphs data set draws text with FreeType, which this Pillow was built without; "
                        "reinstall Pillow from its wheel (pip install --force-reinstall pillow) or use --data shapes.")
    font = ImageFont.load_default(size=int(TEMPLATE * 0.8))  # Aileron, inside Pillow: the same on every machine
    templates = {}
    for weight in WEIGHTS:
        for k, text in enumerate(GLYPH_CLASSES):
            img = Image.new("L", (TEMPLATE, TEMPLATE), 0)
            ImageDraw.Draw(img).text((TEMPLATE / 2, TEMPLATE / 2), text, fill=255, font=font, anchor="mm",
                                     stroke_width=weight, stroke_fill=255)
            templates[weight, k] = img
    return templates


def _affine(scale, aspect, slant, angle, centre):
    """The 6 coefficients PIL's AFFINE transform wants: canvas pixel -> template pixel.

    The digit is scaled (``scale``, its width by ``aspect`` more), slanted (x += slant * y),
    rotated by ``angle`` radians and moved so that the template's centre lands on ``centre``.
    PIL asks for the inverse map, so each step is undone in reverse order.
    """
    c, s = np.cos(angle), np.sin(angle)
    rotate = np.array([[c, -s], [s, c]])
    shape = np.array([[scale * aspect, scale * slant], [0.0, scale]])    # slant, then scale
    inverse = np.linalg.inv(rotate @ shape)                               # canvas offset -> template offset
    offset = TEMPLATE / 2 - inverse @ np.asarray(centre)
    return (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])


def _background(rng, S):
    """(S, S, 3) floats: a random colour with a soft gradient (the colour is returned too)."""
    yy, xx = np.mgrid[0:S, 0:S] / S - 0.5
    colour = rng.uniform(0, 1, 3)
    gradient = rng.uniform(-0.25, 0.25, (2, 3))
    return colour + yy[..., None] * gradient[0] + xx[..., None] * gradient[1], colour


def _luminance(rgb):
    return float(np.dot(rgb, (0.299, 0.587, 0.114)))


def _contrasting(rng, background):
    """A colour that stands out from ``background``: at least 0.6 away summed over RGB, and at least
    0.25 lighter or darker, so that the digit is visible in gray too."""
    colour = rng.uniform(0, 1, 3)
    while np.abs(colour - background).sum() < 0.6 or abs(_luminance(colour) - _luminance(background)) < 0.25:
        colour = rng.uniform(0, 1, 3)
    return colour


def _strokes(rng, big):
    """A mask (big, big) of 0-2 stray lines and arcs, thinner than the digits: clutter."""
    from PIL import Image, ImageDraw
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(0, 3)):
        width = OVERSAMPLE
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, big, 4))
        if rng.random() < 0.5:
            draw.line((x0, y0, x1, y1), fill=255, width=width)
        else:
            box = (min(x0, x1), min(y0, y1), max(x0, x1) + 1, max(y0, y1) + 1)
            draw.arc(box, float(rng.uniform(0, 360)), float(rng.uniform(0, 360)), fill=255, width=width)
    return img


def make_glyphs(num_images=6000, seed=0, image_size=32):
    """``num_images`` images of the digits 0-9 (balanced classes), uint8 ``(N, S, S, 3)``.

    >>> ds = make_glyphs(20, seed=0)
    >>> ds.images.shape, ds.class_names[:3]
    ((20, 32, 32, 3), ['0', '1', '2'])
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    S, big = image_size, image_size * OVERSAMPLE
    templates = _templates()
    labels = np.arange(num_images) % len(GLYPH_CLASSES)
    rng.shuffle(labels)
    images = np.empty((num_images, S, S, 3), dtype=np.uint8)
    for n, label in enumerate(labels):
        background, colour = _background(rng, S)
        ink = _contrasting(rng, colour)
        clutter_ink = colour + 0.5 * (_contrasting(rng, colour) - colour)  # fainter than the digit
        height = rng.uniform(0.5, 0.85) * big                       # the digit's height on the canvas
        scale = height / (0.6 * TEMPLATE)                            # a template digit is ~0.6 of its side
        margin = 0.45 * height                                       # the digit stays (mostly) inside
        centre = rng.uniform(margin, big - margin, 2)
        transform = _affine(scale, aspect=rng.uniform(0.8, 1.2), slant=rng.uniform(-0.25, 0.25),
                            angle=rng.uniform(-20, 20) * np.pi / 180, centre=centre)
        template = templates[WEIGHTS[rng.integers(len(WEIGHTS))], label]
        digit = template.transform((big, big), Image.AFFINE, transform, resample=Image.BILINEAR)
        alpha = np.asarray(digit.resize((S, S), Image.BOX), dtype=np.float64)[..., None] / 255   # (S, S, 1)
        stray = np.asarray(_strokes(rng, big).resize((S, S), Image.BOX), dtype=np.float64)[..., None] / 255
        img = background * (1 - stray) + clutter_ink * stray
        img = img * (1 - alpha) + ink * alpha
        img += rng.normal(0, rng.uniform(0.02, 0.06), (S, S, 3))
        images[n] = np.clip(img * 255, 0, 255).round().astype(np.uint8)
    return ArrayDataset(images, labels, GLYPH_CLASSES)
