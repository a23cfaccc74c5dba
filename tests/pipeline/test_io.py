from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bad_inputs import make_bad_input_corpus
from upocr import io as uio
from upocr.io import (
    ImageReadError,
    atomic_write_bytes,
    atomic_write_text,
    atomic_writer,
    read_image,
    save_png_atomic,
)
from upocr.paths import IMAGE_EXTENSIONS, iter_image_files, safe_relative_output


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_bad_input_corpus(tmp_path_factory.mktemp("corpus"))


def _case_names() -> tuple[list[str], list[str]]:
    """All case names, and the names of the cases that are regular files (readable as bytes)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cases = make_bad_input_corpus(tmp)
        return [c.name for c in cases], [c.name for c in cases if c.path.is_file()]


CASE_NAMES, FILE_CASE_NAMES = _case_names()


def test_corpus_is_large_and_mixed(corpus):
    assert len(corpus) >= 30
    assert len({c.name for c in corpus}) == len(corpus)
    assert sum(c.ok for c in corpus) >= 10 and sum(not c.ok for c in corpus) >= 10


@pytest.mark.parametrize("name", CASE_NAMES)
def test_corpus_case_from_path(corpus, name):
    case = next(c for c in corpus if c.name == name)
    if case.ok:
        out = read_image(case.path, **case.read_kwargs)
        assert out.dtype == np.uint8
        assert out.shape == case.shape
        assert out.flags["C_CONTIGUOUS"]
        if case.check:
            case.check(out)
    else:
        with pytest.raises(ImageReadError) as info:
            read_image(case.path, **case.read_kwargs)
        message = str(info.value)
        assert case.message in message
        assert str(case.path) in message  # the message names the file


@pytest.mark.parametrize("name", FILE_CASE_NAMES)
def test_corpus_case_from_bytes_and_stream(corpus, name):
    case = next(c for c in corpus if c.name == name)
    data = case.path.read_bytes()
    if case.ok:
        assert read_image(data, **case.read_kwargs).shape == case.shape
        with open(case.path, "rb") as handle:
            out = read_image(handle, **case.read_kwargs)
        assert out.shape == case.shape
        if case.check:
            case.check(out)
    else:
        with pytest.raises(ImageReadError) as info:
            read_image(data, **case.read_kwargs)
        assert case.message in str(info.value)
        assert str(info.value).startswith("<bytes>: ")
        with pytest.raises(ImageReadError) as info:
            read_image(data, name="upload 7.png", **case.read_kwargs)
        assert str(info.value).startswith("upload 7.png: ")


def test_sixteen_bit_is_scaled_not_clipped():
    values = np.array([[0, 257, 1000, 32896, 65535]], dtype=np.uint16)
    out = read_image(values)
    assert out[0, :, 0].tolist() == [0, 1, 4, 128, 255]
    pil = Image.fromarray(values)  # I;16
    assert read_image(pil)[0, :, 1].tolist() == [0, 1, 4, 128, 255]


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.full((2, 3), 7, np.uint8), 7),
        (np.full((2, 3, 1), 9, np.uint8), 9),
        (np.full((2, 3), True), 255),
        (np.full((2, 3, 3), 0.5, np.float32), 128),
        (np.full((2, 3), 1.0, np.float64), 255),
        (np.full((2, 3), 30, np.int64), 30),
        (np.full((2, 3), 65535, np.uint16), 255),
    ],
)
def test_arrays_of_supported_kinds(array, expected):
    out = read_image(array)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert (out == expected).all()


def test_rgba_array_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    rgba[1, 1] = (0, 0, 0, 51)  # 20% black
    out = read_image(rgba)
    assert out[0, 0].tolist() == [10, 20, 30]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[1, 1].tolist() == [204, 204, 204]


def test_non_contiguous_array_gives_contiguous_copy():
    base = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    view = base[::2, ::-1]
    out = read_image(view)
    assert out.flags["C_CONTIGUOUS"]
    assert (out == view).all()


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros((4, 4, 2), np.uint8), "unsupported array shape"),
        (np.zeros((2, 3, 4, 5), np.uint8), "unsupported array shape"),
        (np.zeros((4,), np.uint8), "unsupported array shape"),
        (np.zeros((0, 5), np.uint8), "empty"),
        (np.full((2, 2), 2.0, np.float32), "[0, 1]"),
        (np.full((2, 2), np.nan, np.float32), "NaN"),
        (np.full((2, 2), 1000, np.int32), "unsupported array dtype"),
        (np.zeros((2, 2), np.complex64), "unsupported array dtype"),
    ],
)
def test_unsupported_arrays(array, words):
    with pytest.raises(ImageReadError) as info:
        read_image(array, name="frame")
    assert words in str(info.value)
    assert str(info.value).startswith("frame: ")


def test_array_pixel_limit():
    with pytest.raises(ImageReadError, match="too large"):
        read_image(np.zeros((20, 20), np.uint8), max_pixels=399)
    assert read_image(np.zeros((20, 20), np.uint8), max_pixels=400).shape == (20, 20, 3)


def test_pil_image_and_odd_sources(tmp_path):
    rgba = Image.new("RGBA", (3, 2), (0, 0, 255, 0))
    assert (read_image(rgba) == 255).all()
    with pytest.raises(ImageReadError, match="cannot read an image from a int"):
        read_image(42)
    with pytest.raises(ImageReadError, match="binary mode"):
        read_image(io.StringIO("not bytes"))
    path = tmp_path / "a.png"
    Image.new("RGB", (3, 2), (1, 2, 3)).save(path)
    with Image.open(path) as lazy:  # not loaded yet
        assert read_image(lazy)[1, 2].tolist() == [1, 2, 3]
    assert read_image(str(path)).shape == (2, 3, 3)
    assert read_image(bytearray(path.read_bytes())).shape == (2, 3, 3)


def _png_claiming(width, height):
    from bad_inputs import _png_claiming_size

    return _png_claiming_size(width, height)


def test_decompression_bomb_is_caught_on_every_path(monkeypatch):
    bomb = _png_claiming(30000, 30000)
    limit_before = Image.MAX_IMAGE_PIXELS
    # Our limit is tighter than the image library's: its own error is translated.
    with pytest.raises(ImageReadError, match="too large"):
        read_image(bomb, max_pixels=10_000_000)
    # Our limit is looser: the library's limit is lifted for the header only, ours applies.
    with pytest.raises(ImageReadError, match="900,000,000 pixels"):
        read_image(bomb, max_pixels=500_000_000)
    assert Image.MAX_IMAGE_PIXELS == limit_before

    # A library limit below the image size, our limit above it: no warning, no error.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    png = io.BytesIO()
    Image.new("L", (20, 20), 3).save(png, "PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(png.getvalue()).shape == (20, 20, 3)
        assert read_image(png.getvalue(), max_pixels=None).shape == (20, 20, 3)
    assert Image.MAX_IMAGE_PIXELS == 100
    # The library's warning turned into an error is reported as too large, not as a crash.
    small = io.BytesIO()
    Image.new("L", (12, 12), 3).save(small, "PNG")  # 144 pixels: above 100, below 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageReadError, match="too large"):
            read_image(small.getvalue(), max_pixels=100)


def test_no_limit_reads_big_header_until_data_runs_out():
    # With the limit disabled, the bomb header passes the size check and fails on its data.
    with pytest.raises(ImageReadError) as info:
        read_image(_png_claiming(3000, 3000), max_pixels=None)
    assert "too large" not in str(info.value)
    assert "truncated or corrupt" in str(info.value)


# ---- folders ----------------------------------------------------------------------------------


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_iter_image_files_recursive_sorted_and_filtered(tmp_path):
    root = tmp_path / "in"
    for rel in ["b.png", "a.JPG", "sub/z.tif", "sub/a b.webp", "sub/deeper/é.gif", "Z.Jpeg", "sub-2/c.bmp",
                "notes.txt", "model.pth", ".hidden.png", ".git/x.png", "sub/.cache/y.png", "out/old.png"]:
        _touch(root / rel)
    (root / "dir.png").mkdir()
    os.symlink(root / "sub", root / "sub" / "loop")  # a cycle must not hang
    found = iter_image_files(root, exclude=[root / "out"])
    rels = [p.relative_to(root).as_posix() for p in found]
    assert rels == sorted(rels, key=lambda r: tuple(r.split("/")))
    assert set(rels) == {"Z.Jpeg", "a.JPG", "b.png", "sub/a b.webp", "sub/deeper/é.gif", "sub/z.tif", "sub-2/c.bmp"}
    assert rels.index("sub/z.tif") < rels.index("sub-2/c.bmp")  # component order, not string order
    assert iter_image_files(root, exclude=[root / "out"]) == found
    assert len(iter_image_files(root)) == len(found) + 1
    assert all(p.is_file() for p in found)


def test_iter_image_files_single_file_and_missing(tmp_path):
    single = _touch(tmp_path / "scan.dat")
    assert iter_image_files(single) == [single]
    with pytest.raises(FileNotFoundError):
        iter_image_files(tmp_path / "nope")
    assert ".png" in IMAGE_EXTENSIONS and ".jpeg" in IMAGE_EXTENSIONS and ".tiff" in IMAGE_EXTENSIONS


# ---- atomic writes ----------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_creates_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "first ü")
    assert target.read_text(encoding="utf-8") == "first ü"
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert _leftovers(target.parent) == []
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode & 0o044, f"file should be readable by others like a normal file, mode {oct(mode)}"


def test_exception_mid_write_keeps_old_file(tmp_path):
    target = tmp_path / "labels.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as handle:
            handle.write(b"half of the new con")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_failed_replace_removes_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("simulated failure")

    monkeypatch.setattr(uio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_save_png_atomic(tmp_path):
    mask = np.zeros((4, 5), bool)
    mask[1, 2] = True
    path = save_png_atomic(tmp_path / "m" / "mask.png", mask)
    with Image.open(path) as im:
        assert im.mode == "L"
        assert np.asarray(im)[1, 2] == 255 and np.asarray(im).sum() == 255
    labels = np.array([[0, 1, 2]], np.uint8)
    save_png_atomic(tmp_path / "labels.png", labels)
    with Image.open(tmp_path / "labels.png") as im:
        assert np.asarray(im).tolist() == [[0, 1, 2]]
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    save_png_atomic(tmp_path / "rgb.png", Image.fromarray(rgb))
    assert (read_image(tmp_path / "rgb.png") == rgb).all()
    before = path.read_bytes()
    with pytest.raises(ValueError):
        save_png_atomic(path, np.zeros((4, 5), np.float32))
    assert path.read_bytes() == before
    assert _leftovers(path.parent) == []


# ---- output paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel, suffix, expected",
    [
        ("a.jpg", ".png", "a.png"),
        ("sub/dir/page 1.jpeg", ".png", "sub/dir/page 1.png"),
        ("ünï/文字 😀.tif", ".json", "ünï/文字 😀.json"),
        ("sub\\win\\file.JPG", ".png", "sub/win/file.png"),
        ("./a/./b.png", ".png", "a/b.png"),
        ("archive.tar.gz", ".png", "archive.tar.png"),
        ("-dash 'q'.png", "", "-dash 'q'"),
        (".hidden", ".png", ".hidden.png"),
    ],
)
def test_safe_relative_output_maps(tmp_path, rel, suffix, expected):
    out = safe_relative_output(tmp_path / "out", rel, suffix)
    assert out == (tmp_path / "out").joinpath(*expected.split("/"))


@pytest.mark.parametrize(
    "rel", ["../x.png", "a/../../x.png", "a/..", "/etc/passwd", "\\server\\share.png", "C:\\x.png", "c:x.png",
            "a/\x00b.png", "", ".", "a/\nb.png"]
)
def test_safe_relative_output_rejects_escapes(tmp_path, rel):
    with pytest.raises(ValueError):
        safe_relative_output(tmp_path, rel, ".png")


def test_safe_relative_output_rejects_symlink_escape(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "link")
    with pytest.raises(ValueError, match="would leave"):
        safe_relative_output(out, "link/a.jpg", ".png")
    with pytest.raises(ValueError):
        safe_relative_output(out, "a.jpg", "/../x")
