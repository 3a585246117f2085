import os
import pickle

import numpy as np
import pytest
from PIL import Image

from tinyvgg import data
from tinyvgg.data import BatchLoader, DataError, ImageFolder, make_glyphs, make_shapes


def write_image(path, mode="RGB", size=(20, 14), color=(200, 30, 30)):
    img = Image.new("RGB", size, color)
    if mode == "L":
        img = img.convert("L")
    elif mode == "P":
        img = img.convert("P", palette=Image.ADAPTIVE, colors=8)
    elif mode == "RGBA":
        img = img.convert("RGBA")
    img.save(path)


@pytest.fixture
def folder(tmp_path):
    """cats: every format and mode; dogs: two PNGs."""
    cats, dogs = tmp_path / "train" / "cats", tmp_path / "train" / "dogs"
    cats.mkdir(parents=True)
    dogs.mkdir()
    write_image(cats / "a.jpg")
    write_image(cats / "b.png", mode="RGBA")
    write_image(cats / "c.bmp", mode="L")
    write_image(cats / "d.gif", mode="P")
    write_image(cats / "e.webp")
    (cats / "notes.txt").write_text("not an image")
    write_image(dogs / "a.png", color=(10, 10, 250))
    write_image(dogs / "b.PNG", color=(10, 10, 250))
    return tmp_path / "train"


def test_shapes_are_deterministic_balanced_and_varied():
    a, b = make_shapes(200, seed=5), make_shapes(200, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    assert np.bincount(a.labels).tolist() == [20] * 10
    assert not np.array_equal(a.images, make_shapes(200, seed=6).images)
    assert a.images.std() > 40  # colours and positions vary


def test_image_folder_reads_every_format_and_mode(folder):
    ds = ImageFolder(str(folder), image_size=32, progress=False)
    assert ds.class_names == ["cats", "dogs"]
    assert len(ds) == 7 and ds.labels.tolist() == [0] * 5 + [1] * 2
    images = ds.load(np.arange(7))
    assert images.shape == (7, 32, 32, 3) and images.dtype == np.uint8
    assert abs(int(images[-1, 5, 5, 2]) - 250) < 3  # a dog is blue, resized
    mean, std = ds.channel_stats()
    assert mean.shape == (3,) and 0 < mean[0] < 1 and (std > 0).all()


def test_rgba_is_composited_on_white(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / name / "clear.png")
    ds = ImageFolder(str(tmp_path), image_size=32, progress=False)
    assert ds.load([0]).min() == 255


def test_unreadable_image_is_skipped_with_its_name(folder):
    bad = folder / "dogs" / "broken.jpg"
    bad.write_bytes(open(folder / "cats" / "a.jpg", "rb").read()[:60])  # truncated JPEG
    with pytest.warns(UserWarning, match="broken.jpg"):
        ds = ImageFolder(str(folder), image_size=32, progress=False)
    assert len(ds) == 7 and str(bad) not in ds.files


@pytest.mark.parametrize("setup, message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "no class sub-folders"),
    (lambda root: [(root / name).mkdir(parents=True) for name in ("cats", "dogs")],
     r"class folder .*cats has no images"),
    (lambda root: write_image(((root / "cats").mkdir(parents=True), root / "cats" / "x.png")[1]),
     r"has one class \(cats\); a classifier needs at least two"),
    (lambda root: root.write_text("x"), "is not a folder"),
])
def test_bad_folders_get_one_clear_error(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DataError, match=message):
        ImageFolder(str(root), image_size=32, progress=False)


def test_only_unreadable_images_is_an_error(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="no readable images"):
        ImageFolder(str(tmp_path), image_size=32, progress=False)


def test_validation_folder_uses_the_training_classes(folder, tmp_path):
    val = tmp_path / "val"
    (val / "dogs").mkdir(parents=True)
    write_image(val / "dogs" / "x.png")
    ds = ImageFolder(str(val), 32, class_names=["cats", "dogs"], progress=False)
    assert ds.labels.tolist() == [1]
    (val / "birds").mkdir()
    with pytest.raises(DataError, match="birds"):
        ImageFolder(str(val), 32, class_names=["cats", "dogs"], progress=False)


def test_the_cache_is_bounded_and_reloads_from_disk(folder):
    ds = ImageFolder(str(folder), image_size=32, cache_bytes=2 * 32 * 32 * 3, progress=False)
    assert len(ds._cache) == 2
    first = ds.load([0])
    assert len(ds._cache) == 2
    np.testing.assert_array_equal(ds.load([0]), first)


def write_cifar_batch(path, images, labels):
    """A batch in CIFAR-10's python layout: bytes keys, data (N, 3072) channel-major."""
    batch = {b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1), b"labels": list(labels),
             b"batch_label": b"test"}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def test_cifar10_batches_are_read_as_plain_data(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_cifar_batch(tmp_path / name, rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), [0, 1, 2, 9])
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    write_cifar_batch(tmp_path / "test_batch", images, [3, 3, 4, 5])
    train, test = data.load_cifar10(str(tmp_path))
    assert len(train) == 20 and train.class_names[9] == "truck"
    np.testing.assert_array_equal(test.images, images)
    assert test.labels.tolist() == [3, 3, 4, 5]


def test_a_cifar_file_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(DataError, match="refusing to load"):
        data.load_cifar10(str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        data.load_cifar10(str(tmp_path / "nowhere"))


def test_split_is_seeded_stratified_and_disjoint():
    ds = make_shapes(100, seed=0)
    train, val = data.split(ds, 0.2, seed=1)
    assert len(train) == 80 and len(val) == 20
    assert np.bincount(val.labels).tolist() == [2] * 10
    assert not set(train.indices) & set(val.indices)
    np.testing.assert_array_equal(data.split(ds, 0.2, seed=1)[1].indices, val.indices)


def test_open_dataset_values():
    train, val = data.open_dataset("shapes:120", 32)
    assert len(train) == 120 and len(val) == 100
    train, val = data.open_dataset("glyphs:30", 32)
    assert len(train) == 30 and train.class_names == list("0123456789")
    for spec in ("shapes:many", "shapes:0", "glyphs:-5", "shapes:9"):
        with pytest.raises(DataError, match="whole number of at least 10"):
            data.open_dataset(spec, 32)
    with pytest.raises(DataError, match=r"would take \d+ GiB of memory; ask for at most"):
        data.open_dataset("shapes:99999999", 32)


def test_glyphs_are_seeded_balanced_and_not_solvable_by_colour():
    a, b = make_glyphs(200, seed=3), make_glyphs(200, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(make_glyphs(200, seed=4).images, a.images)
    assert np.bincount(a.labels).tolist() == [20] * 10
    assert a.images.dtype == np.uint8 and a.images.shape == (200, 32, 32, 3)
    # every class spans the colours: the mean colour of an image says nothing about its digit
    many = make_glyphs(1000, seed=5)
    means = many.images.reshape(1000, -1, 3).mean(axis=1)
    class_means = np.stack([means[many.labels == k].mean(axis=0) for k in range(10)])
    assert np.ptp(class_means, axis=0).max() < 40  # 100 images a class: chance alone spreads them ~25
    assert make_glyphs(10, seed=0, image_size=64).images.shape == (10, 64, 64, 3)


def test_batches_are_normalized_shuffled_by_seed_and_complete():
    ds = make_shapes(50, seed=0)
    mean, std = ds.channel_stats()
    loader = BatchLoader(ds, 16, mean, std, shuffle=True, rng=np.random.default_rng(0))
    batches = list(loader)
    assert len(loader) == len(batches) == 4 and [len(y) for _, y in batches] == [16, 16, 16, 2]
    x = np.concatenate([b[0] for b in batches])
    assert x.dtype == np.float32
    np.testing.assert_allclose(x.reshape(-1, 3).mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(x.reshape(-1, 3).std(axis=0), 1, atol=1e-3)
    assert sorted(np.concatenate([b[1] for b in batches]).tolist()) == sorted(ds.labels.tolist())
    again = list(BatchLoader(ds, 16, mean, std, shuffle=True, rng=np.random.default_rng(0), prefetch=False))
    for (x1, y1), (x2, y2) in zip(batches, again):  # the background thread changes nothing
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_augmentation_flips_and_crops():
    x = np.arange(2 * 4 * 4 * 1, dtype=np.float32).reshape(2, 4, 4, 1)
    out = data.augment_batch(x.copy(), flips=np.array([True, False]), offsets=np.array([[4, 4], [5, 4]]), pad=4)
    np.testing.assert_array_equal(out[0], x[0, :, ::-1])            # centre crop, flipped
    np.testing.assert_array_equal(out[1, :3], x[1, 1:])              # shifted up by one row
    np.testing.assert_array_equal(out[1, 3], 0)                      # the padding (the mean colour)


def test_a_linear_model_cannot_solve_the_shapes():
    # The built-in data must need features that see shape: pixels alone do not separate it.
    from tinyvgg.layers import Dense, Flatten
    from tinyvgg.models import Sequential
    from tinyvgg.optim import Adam
    from tinyvgg.training import Trainer
    train, val = make_shapes(1500, seed=0), make_shapes(500, seed=1)
    mean, std = train.channel_stats()
    rng = np.random.default_rng(0)
    model = Sequential([("flatten", Flatten()), ("linear", Dense(32 * 32 * 3, 10, init="zeros"))])
    trainer = Trainer(model, Adam(model.named_params(), lr=1e-3), rng, progress=False)
    trainer.fit(BatchLoader(train, 64, mean, std, shuffle=True, rng=rng), BatchLoader(val, 250, mean, std), epochs=8)
    assert trainer.history["accuracy"][-1] > 0.3  # it does fit its training images somewhat...
    assert max(trainer.history["val_accuracy"]) < 0.3  # ...but not new ones (a small VGG reaches ~98%)


def test_a_photo_stored_rotated_with_an_exif_orientation_is_read_upright(tmp_path):
    from PIL import Image

    from tinyvgg.data import decode_image
    stored = Image.new("RGB", (64, 32), (0, 0, 255))       # as the phone's sensor wrote it: wide,
    stored.paste((255, 0, 0), (0, 0, 32, 32))              # red on the left, blue on the right
    exif = stored.getexif()
    exif[0x0112] = 6                                       # Orientation: turn 90 degrees clockwise to view
    stored.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    image = decode_image(tmp_path / "photo.jpg", 32).astype(int)
    top, bottom = image[:12].mean(axis=(0, 1)), image[-12:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60, top               # upright: the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
