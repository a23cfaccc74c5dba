"""A corpus of odd and broken image inputs, generated on the fly (no binary files are stored).

``make_bad_input_corpus(tmp_dir)`` writes every case into ``tmp_dir`` and returns a list of
:class:`Case`. Each case says what reading it must give: ``("ok", (H, W, 3))`` or
``("error", "words the message must contain")``. Most cases are plain files, so the same corpus
can be fed to the command line and the pipeline; a case with ``read_kwargs`` needs those
keyword arguments of :func:`upocr.io.read_image` (e.g. a small ``max_pixels``).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from PIL import Image

__all__ = ["Case", "make_bad_input_corpus"]


@dataclass
class Case:
    """One input and what reading it must give."""

    name: str
    path: Path
    expected: tuple[str, Any]
    read_kwargs: dict[str, Any] = field(default_factory=dict)
    check: Callable[[np.ndarray], None] | None = None

    @property
    def ok(self) -> bool:
        return self.expected[0] == "ok"

    @property
    def shape(self) -> tuple[int, int, int] | None:
        return self.expected[1] if self.ok else None

    @property
    def message(self) -> str | None:
        return None if self.ok else self.expected[1]

    def __str__(self) -> str:
        return self.name


# ---- helpers -------------------------------------------------------------------------------


def _save(image: Image.Image, path: Path, fmt: str | None = None, **params: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **params)
    return path


def _encoded(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 255) // max(1, width - 1), (y * 255) // max(1, height - 1), np.full_like(x, 90)], -1).astype(np.uint8)


def _quadrants(height: int, width: int) -> np.ndarray:
    """Red top-left, green top-right, blue bottom-left, white bottom-right."""
    out = np.zeros((height, width, 3), np.uint8)
    h2, w2 = height // 2, width // 2
    out[:h2, :w2] = (255, 0, 0)
    out[:h2, w2:] = (0, 255, 0)
    out[h2:, :w2] = (0, 0, 255)
    out[h2:, w2:] = (255, 255, 255)
    return out


def _close(actual: Any, expected: Any, tolerance: int, what: str) -> None:
    a = np.asarray(actual, dtype=np.int32)
    e = np.asarray(expected, dtype=np.int32)
    assert np.abs(a - e).max() <= tolerance, f"{what}: got {a.tolist()}, expected {e.tolist()} (+-{tolerance})"


def _pixel(y: int, x: int, rgb: tuple[int, int, int], tolerance: int = 0) -> Callable[[np.ndarray], None]:
    def check(out: np.ndarray) -> None:
        _close(out[y, x], rgb, tolerance, f"pixel (y={y}, x={x})")

    return check


def _all(*checks: Callable[[np.ndarray], None]) -> Callable[[np.ndarray], None]:
    def check(out: np.ndarray) -> None:
        for item in checks:
            item(out)

    return check


# ---- the corpus ----------------------------------------------------------------------------


def make_bad_input_corpus(tmp_dir: str | os.PathLike) -> list[Case]:
    """Write the corpus into ``tmp_dir`` (created if needed) and return its cases."""
    root = Path(tmp_dir)
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, path: Path, expected: tuple[str, Any], check=None, **read_kwargs: Any) -> None:
        cases.append(Case(name, path, expected, dict(read_kwargs), check))

    def write(name: str, data: bytes) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    base = Image.fromarray(_quadrants(24, 32))
    png = _encoded(base, "PNG")
    big_png = _encoded(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)), "PNG")
    big_jpeg = _encoded(Image.fromarray(_gradient(64, 96)), "JPEG", quality=90)

    # -- files that are not (whole) images ------------------------------------------------------
    add("zero-byte", write("empty.png", b""), ("error", "0 bytes"))
    add("truncated-png", write("truncated.png", big_png[: len(big_png) // 2]), ("error", "truncated or corrupt"))
    add("truncated-jpeg", write("truncated.jpg", big_jpeg[: len(big_jpeg) // 2]), ("error", "truncated or corrupt"))
    add("header-only-png", write("header_only.png", png[:40]), ("error", "truncated or corrupt"))
    corrupt = bytearray(big_png)
    idat = corrupt.find(b"IDAT")
    corrupt[idat + 10 : idat + 30] = bytes(20)
    add("corrupt-png-data", write("corrupt_data.png", bytes(corrupt)), ("error", "truncated or corrupt"))
    add(
        "random-bytes-png",
        write("random.png", bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8))),
        ("error", "not an image"),
    )
    add("text-as-jpg", write("notes.jpg", "Meeting notes\nnothing to see here\n".encode()), ("error", "text file"))
    add(
        "html-as-png",
        write("download.png", b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>\n"),
        ("error", "HTML"),
    )
    add("pdf-as-png", write("scan.png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"), ("error", "PDF"))
    add("svg", write("logo.png", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>\n'), ("error", "SVG"))
    add("heic", write("photo.jpg", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)), ("error", "HEIC"))
    folder = root / "x.png"
    folder.mkdir(exist_ok=True)
    add("directory-named-png", folder, ("error", "is a directory"))
    add("missing-file", root / "does_not_exist.png", ("error", "not found"))

    # -- too many pixels ------------------------------------------------------------------------
    add("bomb-header", write("bomb.png", _png_claiming_size(30000, 30000)), ("error", "too large"))
    add(
        "over-small-limit",
        write("limit.png", _encoded(Image.fromarray(_gradient(40, 50)), "PNG")),
        ("error", "2,000 pixels"),
        max_pixels=1000,
    )

    # -- sizes ----------------------------------------------------------------------------------
    add("one-pixel", write("one.png", _encoded(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG")), ("ok", (1, 1, 3)),
        _pixel(0, 0, (10, 20, 30)))
    add("thin-1x5000", write("thin_wide.png", _encoded(Image.new("L", (5000, 1), 200), "PNG")), ("ok", (1, 5000, 3)),
        _pixel(0, 4999, (200, 200, 200)))
    add("thin-5000x1", write("thin_tall.png", _encoded(Image.new("L", (1, 5000), 50), "PNG")), ("ok", (5000, 1, 3)),
        _pixel(4999, 0, (50, 50, 50)))

    # -- modes and bit depths -------------------------------------------------------------------
    values16 = np.array([[0, 257, 32896, 65535], [1000, 2000, 40000, 65280]], dtype=np.uint16)
    expected16 = np.rint(values16 / 257.0).astype(np.uint8)

    def check16(out: np.ndarray) -> None:
        assert (out[..., 0] == expected16).all(), f"16-bit scaling: got {out[..., 0].tolist()}, expected {expected16.tolist()}"

    add("png-16bit-grey", write("grey16.png", _encoded(Image.fromarray(values16), "PNG")), ("ok", (2, 4, 3)), check16)
    add("tiff-16bit-grey", write("grey16.tif", _encoded(Image.fromarray(values16), "TIFF")), ("ok", (2, 4, 3)), check16)
    add("tiff-I;16B", write("grey16_be.tiff", _encoded(Image.fromarray(values16.astype(">u2")), "TIFF")), ("ok", (2, 4, 3)), check16)
    add("tiff-32bit-int", write("int32.tif", _encoded(Image.fromarray(values16.astype(np.int32)), "TIFF")), ("ok", (2, 4, 3)), check16)
    rgb16 = np.zeros((2, 2, 3), np.uint16)
    rgb16[0, 0] = (65535, 32896, 0)
    ok, enc = cv2.imencode(".png", rgb16[..., ::-1])  # OpenCV writes 16-bit RGB PNG (as BGR)
    assert ok
    add("png-16bit-rgb", write("rgb48.png", enc.tobytes()), ("ok", (2, 2, 3)), _pixel(0, 0, (255, 128, 0), 1))
    floats = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    add("tiff-float-F", write("float.tif", _encoded(Image.fromarray(floats), "TIFF")), ("ok", (1, 4, 3)),
        lambda out: _close(out[0, :, 0], [0, 64, 128, 255], 1, "float scaling"))
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    add("cmyk-jpeg", write("cmyk.jpg", _encoded(cmyk, "JPEG", quality=95)), ("ok", (16, 16, 3)), _pixel(8, 8, (255, 0, 0), 12))
    palette = Image.new("P", (6, 4), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((5, 3), 1)
    add("palette-transparent", write("palette.png", _encoded(palette, "PNG", transparency=0)), ("ok", (4, 6, 3)),
        _all(_pixel(0, 0, (255, 255, 255)), _pixel(3, 5, (0, 0, 255))))
    la = Image.fromarray(np.stack([np.full((5, 5), 40, np.uint8), np.zeros((5, 5), np.uint8)], -1), "LA")
    la.putpixel((2, 2), (40, 255))
    add("la-alpha", write("la.png", _encoded(la, "PNG")), ("ok", (5, 5, 3)),
        _all(_pixel(0, 0, (255, 255, 255)), _pixel(2, 2, (40, 40, 40))))
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 128  # half-transparent black over white -> mid grey
    rgba[0, 0] = (200, 10, 10, 255)
    add("rgba-half-alpha", write("rgba.png", _encoded(Image.fromarray(rgba, "RGBA"), "PNG")), ("ok", (4, 4, 3)),
        _all(_pixel(1, 1, (127, 127, 127), 1), _pixel(0, 0, (200, 10, 10))))
    onebit = Image.new("1", (9, 3), 0)
    onebit.putpixel((4, 1), 1)
    add("one-bit", write("onebit.png", _encoded(onebit, "PNG")), ("ok", (3, 9, 3)),
        _all(_pixel(1, 4, (255, 255, 255)), _pixel(0, 0, (0, 0, 0))))
    frames = [Image.new("RGB", (10, 6), (255, 0, 0)), Image.new("RGB", (10, 6), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    add("animated-gif", write("anim.gif", gif.getvalue()), ("ok", (6, 10, 3)), _pixel(3, 5, (255, 0, 0), 2))
    pages = io.BytesIO()
    frames[1].save(pages, "TIFF", save_all=True, append_images=[frames[0]])
    add("multipage-tiff", write("pages.tiff", pages.getvalue()), ("ok", (6, 10, 3)), _pixel(3, 5, (0, 0, 255)))
    add("webp", write("image.webp", _encoded(base, "WEBP", lossless=True)), ("ok", (24, 32, 3)), _pixel(0, 0, (255, 0, 0)))
    add("bmp", write("image.bmp", _encoded(base, "BMP")), ("ok", (24, 32, 3)), _pixel(23, 0, (0, 0, 255)))

    # -- EXIF orientation (stored 40 wide x 24 high, red top-left) -----------------------------
    stored = Image.fromarray(_quadrants(24, 40))
    for orientation, expected_red in ((6, (5, 18)), (8, (34, 5))):
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = _encoded(stored, "JPEG", quality=95, exif=exif.tobytes())
        # Orientation 6: shown turned 90 degrees clockwise, the red corner ends top-right.
        # Orientation 8: shown turned 90 degrees counter-clockwise, red ends bottom-left.
        add(f"exif-orientation-{orientation}", write(f"exif_{orientation}.jpg", data), ("ok", (40, 24, 3)),
            _pixel(expected_red[0], expected_red[1], (255, 0, 0), 40))

    # -- names and paths ------------------------------------------------------------------------
    for case_name, file_name in (
        ("name-with-spaces", "my scan  page 1.png"),
        ("name-unicode", "ünïcödé 文字 ψ.png"),
        ("name-emoji", "receipt 🧾😀.png"),
        ("name-quotes", "it's \"quoted\" `x`.png"),
        ("name-leading-dash", "-rf --help.png"),
        ("uppercase-extension", "SHOUT.JPG"),
        ("no-extension", "no_extension"),
        ("png-named-jpg", "actually_png.jpg"),
        ("hidden-file", ".hidden.png"),
    ):
        add(case_name, write(file_name, png), ("ok", (24, 32, 3)), _pixel(0, 31, (0, 255, 0)))
    target = write("nested/deeper/target.png", png)
    link = root / "link.png"
    if not os.path.lexists(link):
        os.symlink(target, link)
    add("symlink", link, ("ok", (24, 32, 3)), _pixel(23, 31, (255, 255, 255)))
    dangling = root / "dangling.png"
    if not os.path.lexists(dangling):
        os.symlink(root / "nowhere.png", dangling)
    add("broken-symlink", dangling, ("error", "broken symbolic link"))
    return cases

