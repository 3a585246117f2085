"""The paper's scale jittering and PCA colour shift (tinyvgg.data.augment)."""
import numpy as np
import pytest

from tinyvgg.data import make_shapes
from tinyvgg.data.augment import colour_shift, pixel_pca, scale_jitter


def test_scale_jitter_at_the_crop_size_keeps_the_image():
    images = make_shapes(4, seed=0).images
    out, sides = scale_jitter(images, 32, 32, 32, np.random.default_rng(0))
    np.testing.assert_array_equal(sides, 32)
    np.testing.assert_array_equal(out, images)


def test_scale_jitter_draws_sides_in_range_and_crops_a_magnified_part():
    rng = np.random.default_rng(1)
    images = np.zeros((200, 8, 8, 3), dtype=np.uint8)
    images[:, :4] = 255                                  # top half white, bottom half black
    out, sides = scale_jitter(images, 8, 8, 16, rng)
    assert out.shape == (200, 8, 8, 3) and out.dtype == np.uint8
    assert sides.min() == 8 and sides.max() == 16      # both ends of [S_min, S_max] are drawn
    # at S = 16 the image is magnified 2x: an 8-pixel crop shows at most one boundary row pair
    white = (out[sides == 16, :, :, 0] > 127).mean(axis=(1, 2))
    assert ((white == 0) | (white == 1)).any()           # some crops see only one half
    with pytest.raises(ValueError, match="crop <= S_min"):
        scale_jitter(images, 10, 8, 16, rng)


def test_pixel_pca_diagonalizes_the_colour_covariance():
    images = make_shapes(50, seed=2).images
    eigvals, eigvecs = pixel_pca(images)
    cov = np.cov(images.reshape(-1, 3).astype(np.float64).T / 255)
    np.testing.assert_allclose(eigvecs @ np.diag(eigvals) @ eigvecs.T, cov, atol=1e-12)
    assert np.all(np.diff(eigvals) <= 0)


def test_colour_shift_is_one_shift_per_image_along_the_axes():
    rng = np.random.default_rng(3)
    x = rng.random((2, 4, 4, 3))
    eigvals, eigvecs = np.array([4.0, 1.0, 0.25]), np.linalg.qr(rng.standard_normal((3, 3)))[0]
    alphas = np.array([[1.0, 0.0, 0.0], [0.0, -2.0, 0.5]])
    out = colour_shift(x, eigvals, eigvecs, alphas)
    np.testing.assert_allclose(out[0] - x[0], np.broadcast_to(2.0 * eigvecs[:, 0], (4, 4, 3)))
    np.testing.assert_allclose(out[1] - x[1], np.broadcast_to(-2.0 * eigvecs[:, 1] + 0.25 * eigvecs[:, 2], (4, 4, 3)))
