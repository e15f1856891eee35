"""qlite.data: grids, images, audio, analytic functions, super-resolution pairs and bad input."""

import math

import numpy as np
import pytest
import torch

from qlite import data
from qlite.data import Signal, grid_coordinates

skimage = pytest.importorskip("skimage")


def test_grid_coordinates_centres_corners_and_row_major_order():
    assert torch.allclose(grid_coordinates(4)[:, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(grid_coordinates(5, align_corners=True)[:, 0], torch.linspace(-1, 1, 5))
    g = grid_coordinates((2, 3))
    assert g.shape == (6, 2)
    assert torch.allclose(g[1], torch.tensor([-0.5, 0.0]))  # row 0, column 1: second axis varies fastest
    assert torch.allclose(g[3], torch.tensor([0.5, -2 / 3]))


def test_image_without_resize_is_the_bundled_pixels_mapped_to_minus_one_one():
    s = data.image("camera", size=None)
    raw = torch.from_numpy(skimage.data.camera().astype(np.float64) / 255)
    assert s.grid_shape == raw.shape and s.data_range == 2.0
    assert torch.allclose(s.values[:, 0].double(), (raw * 2 - 1).reshape(-1), atol=1e-6)


def test_image_resize_keeps_the_mean_and_the_range():
    full = data.image("camera", size=None)
    s = data.image("camera", size=32)
    assert s.coords.shape == (1024, 2) and s.values.shape == (1024, 1) and s.grid_shape == (32, 32)
    assert s.values.min() >= -1 and s.values.max() <= 1
    assert abs(float(s.values.mean() - full.values.mean())) < 0.01  # anti-aliased resize preserves brightness
    assert s.meta["source"] == "camera" and s.is_image


def test_colour_image_keeps_three_channels_and_crops_to_a_square():
    s = data.image("astronaut", size=16, gray=False)
    assert s.values.shape == (256, 3)
    coffee = data.image("coffee", size=8)  # 400 x 600: centre crop
    assert coffee.grid_shape == (8, 8)


def test_image_from_a_file_and_from_an_array(tmp_path):
    pixels = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    path = tmp_path / "ramp.png"
    skimage.io.imsave(path, pixels, check_contrast=False)
    s = data.image(path, size=None)
    assert torch.allclose(s.values[:, 0], torch.from_numpy(pixels.reshape(-1) / 255 * 2 - 1).float(), atol=1e-6)
    a = data.image(pixels, size=None)
    assert torch.equal(a.values, s.values)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imageio's legacy plugins, probed on a bad file
def test_image_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an existing file nor one of scikit-image"):
        data.image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="is not an image file scikit-image can read"):
        data.image(bad)
    with pytest.raises(ValueError, match="size must be a positive int"):
        data.image("camera", size=0)
    with pytest.raises(ValueError, match=r"float image must hold values in \[0, 1\], got \[0, 255\]"):
        data.image(np.linspace(0, 255, 64 * 64).reshape(64, 64), size=8)


def _write_wav(path, samples, rate=8000):
    from scipy.io import wavfile

    wavfile.write(path, rate, samples)


def test_audio_normalises_slices_and_mixes_channels(tmp_path):
    t = np.arange(1000)
    mono = (1000 * np.sin(t / 10)).astype(np.int16)
    _write_wav(tmp_path / "a.wav", mono)
    s = data.audio(tmp_path / "a.wav", 100, 600, 5)
    expect = mono[100:600:5].astype(np.float64)
    expect /= np.abs(expect).max()
    assert s.values.shape == (100, 1) and s.grid_shape == (100,)
    assert torch.allclose(s.values[:, 0].double(), torch.from_numpy(expect), atol=1e-6)
    assert float(s.values.abs().max()) == pytest.approx(1.0)
    assert s.coords.min() > -1 and s.coords.max() < 1 and s.meta["rate"] == 8000
    stereo = np.stack([mono, np.zeros_like(mono)], axis=1)
    _write_wav(tmp_path / "s.wav", stereo)
    assert torch.allclose(data.audio(tmp_path / "s.wav").values, data.audio(tmp_path / "a.wav").values)
    eight = (128 + 100 * np.sin(t / 10)).round().astype(np.uint8)  # 8-bit WAV: unsigned, silence at 128
    _write_wav(tmp_path / "u8.wav", eight)
    v = data.audio(tmp_path / "u8.wav").values[:, 0]
    assert float(v.min()) == pytest.approx(-1.0) and float(v.max()) == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore:Chunk:UserWarning")  # scipy, on the deliberately broken file
def test_audio_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        data.audio(tmp_path / "nope.wav")
    _write_wav(tmp_path / "z.wav", np.zeros(100, dtype=np.int16))
    with pytest.raises(ValueError, match="silent"):
        data.audio(tmp_path / "z.wav")
    _write_wav(tmp_path / "a.wav", np.ones(100, dtype=np.int16))
    with pytest.raises(ValueError, match="are empty"):
        data.audio(tmp_path / "a.wav", 200, 300)
    with pytest.raises(ValueError, match="step must be a positive int"):
        data.audio(tmp_path / "a.wav", step=0)
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(ValueError, match="could not read WAV"):
        data.audio(tmp_path / "bad.wav")


def test_the_papers_bach_clip(shared_data):
    from scipy.io import wavfile

    path = shared_data / "gt_bach.wav"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    s = data.audio(path, 20000, 25000, 5)
    _, raw = wavfile.read(path)
    raw = raw.astype(np.float64)[20000:25000:5]
    assert s.n_points == 1000
    assert torch.allclose(s.values[:, 0].double(), torch.from_numpy(raw / np.abs(raw).max()), atol=1e-6)


def test_signal_validation_names_the_problem():
    c = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="4 coordinates but 3 values"):
        Signal(c, torch.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        Signal(c, torch.tensor([0.0, math.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match="non-finite"):
        Signal(torch.full((4, 2), math.inf), torch.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        Signal(torch.zeros(0, 2), torch.zeros(0))
    with pytest.raises(TypeError, match="floating"):
        Signal(torch.zeros(4, 2, dtype=torch.long), torch.zeros(4))
    with pytest.raises(ValueError, match="grid_shape"):
        Signal(c, torch.zeros(4), grid_shape=(3, 3))
    with pytest.raises(ValueError, match="data_range"):
        Signal(c, torch.zeros(4), data_range=0)


def test_function_samples_on_a_grid_and_on_given_coordinates():
    s = data.function(lambda x: torch.sin(math.pi * x[:, 0]), 50)
    assert torch.allclose(s.values[:, 0], torch.sin(math.pi * grid_coordinates(50)[:, 0]))
    assert s.data_range == pytest.approx(float(s.values.max() - s.values.min()))
    pts = torch.rand(7, 3)
    s2 = data.function(lambda x: x.sum(1, keepdim=True), pts)
    assert s2.grid_shape is None and torch.allclose(s2.values[:, 0], pts.sum(1))


def test_fingerprint_changes_with_the_data():
    a = data.function(lambda x: x[:, 0], 10)
    b = data.function(lambda x: x[:, 0] + 1e-3, 10)
    assert a.fingerprint() == data.function(lambda x: x[:, 0], 10).fingerprint() != b.fingerprint()


def test_block_mean_of_cell_centres_is_the_coarse_grid():
    fine = data.function(lambda x: x[:, :1] * 2 + x[:, 1:] ** 2, (8, 12))
    coarse = data.downsample(fine, 2)
    assert coarse.grid_shape == (4, 6)
    assert torch.allclose(coarse.coords, grid_coordinates((4, 6)), atol=1e-6)
    manual = fine.as_grid()[..., 0].reshape(4, 2, 6, 2).mean((1, 3)).reshape(-1)
    assert torch.allclose(coarse.values[:, 0], manual, atol=1e-6)
    with pytest.raises(ValueError, match="not divisible"):
        data.downsample(fine, 5)


def test_super_resolution_pair():
    pair = data.super_resolution("camera", low=16, high=32)
    assert pair.train.grid_shape == (16, 16) and pair.eval.grid_shape == (32, 32)
    assert torch.allclose(pair.train.values, data.downsample(pair.eval, 2).values)
    with pytest.raises(ValueError, match="multiple"):
        data.super_resolution("camera", low=24, high=32)
    fine = data.image("camera", size=48)
    with pytest.raises(ValueError, match=r"grid is \(48, 48\), not 64 per side"):
        data.super_resolution(fine, low=32, high=64)
    assert data.super_resolution(fine, low=16, high=48).train.grid_shape == (16, 16)


def test_bilinear_upsampling_is_exact_for_a_linear_function_inside_the_grid():
    f = lambda x: 0.3 * x[:, :1] - 0.7 * x[:, 1:] + 0.1  # noqa: E731
    coarse = data.function(f, (8, 8))
    up = data.upsample(coarse, (16, 16), "bilinear")
    fine = grid_coordinates((16, 16))
    inside = (fine.abs() <= 1 - 1 / 8 + 1e-9).all(1)  # within the outermost coarse cell centres
    assert torch.allclose(up[inside], f(fine)[inside], atol=1e-6)
    nearest = data.upsample(coarse, (16, 16), "nearest")
    assert torch.equal(nearest.reshape(16, 16), coarse.as_grid()[..., 0].repeat_interleave(2, 0).repeat_interleave(2, 1))
    with pytest.raises(ValueError, match="not available"):
        data.upsample(coarse, (16, 16), "linear")
