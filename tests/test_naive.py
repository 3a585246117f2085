"""The loop references are the oracle for the fast kernels, so they are checked by hand here."""
import numpy as np

from tinyvgg.classroom import naive


def test_conv_of_ones_counts_the_pixels_under_the_kernel():
    x = np.ones((1, 3, 3, 2))
    W = np.ones((3, 3, 2, 1))
    out = naive.conv2d_forward(x, W, np.array([0.5]), pad=1)[0, :, :, 0]
    np.testing.assert_array_equal(out, [[8.5, 12.5, 8.5], [12.5, 18.5, 12.5], [8.5, 12.5, 8.5]])


def test_conv_backward_of_a_single_tap():
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    W = np.zeros((3, 3, 1, 1))
    W[1, 1] = 2.0  # the centre tap: out = 2 x
    dout = np.ones((1, 3, 3, 1))
    dx, dW, db = naive.conv2d_backward(x, W, dout, pad=1)
    np.testing.assert_array_equal(dx, 2 * dout)
    assert dW[1, 1, 0, 0] == x.sum() and dW[0, 0, 0, 0] == x[0, :2, :2].sum() and db[0] == 9


def test_maxpool_picks_the_window_maximum_and_routes_to_the_first_on_ties():
    x = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 0.0], [9.0, 9.0, 9.0]]).reshape(1, 3, 3, 1)
    assert naive.maxpool_forward(x).ravel().tolist() == [5.0]
    dx = naive.maxpool_backward(x, np.array([7.0]).reshape(1, 1, 1, 1))
    assert dx.ravel().tolist() == [0, 7, 0, 0, 0, 0, 0, 0, 0]


def test_im2col_rows_are_the_patches_and_col2im_adds_them_back():
    x = np.arange(2 * 3 * 3 * 2, dtype=float).reshape(2, 3, 3, 2)
    cols = naive.im2col(x, 3, 1)
    assert cols.shape == (2 * 9, 18)
    np.testing.assert_array_equal(cols[4], x[0].ravel())          # the centre pixel's patch is the whole image
    assert cols[0, :8].tolist() == [0] * 8 and cols[0, 8:10].tolist() == x[0, 0, 0].tolist()
    # col2im of all ones counts how many patches cover each pixel: 4 in a corner, 9 in the centre
    counts = naive.col2im(np.ones_like(cols), x.shape, 3, 1)
    assert counts[0, 0, 0, 0] == 4 and counts[0, 1, 1, 0] == 9 and counts[0, 0, 1, 0] == 6
