"""Bad input that used to be unclear or silently wrong (issue 15): non-images, truncated WAVs,
non-integer audio bounds, 0-255 values with PSNR's range assumed to be 2."""

import math

import numpy as np
import pytest
import torch

from qlite import data
from qlite.data import Signal


def test_a_text_file_is_not_an_image(tmp_path):
    p = tmp_path / "photo.png"
    p.write_text("hello, I am text")
    with pytest.raises(ValueError, match=r"'.*photo.png' is not an image file scikit-image can read \(PNG, JPEG"):
        data.image(p)


@pytest.fixture
def wav(tmp_path):
    from scipy.io import wavfile

    path = tmp_path / "tone.wav"
    wavfile.write(path, 8000, (3000 * np.sin(np.arange(2000) / 7)).astype(np.int16))
    return path


def test_a_truncated_wav_header(tmp_path, wav):
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav.read_bytes()[:30])  # inside the fmt chunk
    with pytest.raises(ValueError, match="truncated or not a WAV"):
        data.audio(cut)


@pytest.mark.parametrize("start,stop", [(1.5, 100), (0, 99.0), (True, 100), ("0", 100)])
def test_audio_slice_bounds_must_be_integers(wav, start, stop):
    with pytest.raises(TypeError, match=r"(start|stop) must be an int sample index"):
        data.audio(wav, start, stop)
    assert data.audio(wav, np.int64(0), 100).n_points == 100  # numpy integers are fine


def test_values_outside_minus_one_one_need_their_range():
    coords = torch.linspace(-1, 1, 50)[:, None]
    pixels = torch.arange(50.0)[:, None] * 5  # 0 .. 245, like 8-bit data
    with pytest.raises(ValueError, match=r"span \[0, 245\], outside \[-1, 1\].*data_range="):
        Signal(coords, pixels)
    s = Signal(coords, pixels, data_range=255)
    from qlite.training.metrics import psnr

    noisy = pixels + 1.0
    assert psnr(noisy, pixels, s.data_range) == pytest.approx(20 * math.log10(255))  # MSE 1: 48.1 dB, not 6.0
    assert Signal(coords, pixels / 245 * 2 - 1).data_range == 2.0  # normalised data keeps the default
    from qlite.training import fit
    from qlite.models import MLP

    with pytest.raises(ValueError, match="data_range="):  # a (coords, values) pair: refused before training
        fit(MLP(1, 1, 4), (coords, pixels), epochs=1)
    with pytest.raises(TypeError, match="data_range must be a number"):
        Signal(coords, pixels, data_range="255")
