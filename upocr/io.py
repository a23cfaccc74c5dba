"""Reading user images and writing output files safely.

This is the one place that turns whatever the user hands us (a path, bytes, a stream, a PIL
image or a numpy array) into a ``uint8`` ``(H, W, 3)`` RGB array, and the one place that
writes files: always atomically, so that an interrupted run never leaves half a file behind.

Conversions applied by :func:`read_image`:

* EXIF orientation is applied, so the array is the image as a viewer shows it.
* Transparency (``LA``, ``RGBA``, ``P`` or ``L``/``RGB`` with a transparent colour) is
  composited onto white.
* 16-bit data (``I;16`` PNG/TIFF, ``uint16`` arrays) is scaled to 8 bits (``round(v / 257)``),
  never clipped. ``I`` (32-bit integer) data is read as 8-bit when every value is at most 255,
  otherwise as 16-bit. ``F`` (float) data in [0, 1] is scaled by 255; float data beyond that is
  read as 8-bit or 16-bit by its largest value.
* Animated or multi-page files give their first frame.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageReadError",
    "read_image",
    "pil_to_rgb",
    "array_to_rgb",
    "atomic_writer",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "save_png_atomic",
]

#: Default limit on the number of pixels of an image (width x height): 100 megapixels.
DEFAULT_MAX_PIXELS = 100_000_000


# Pillow keeps its own decompression-bomb limit in a module global. When our limit is looser than
# Pillow's, the global is lifted while a header is parsed (our own check follows immediately); the
# lock keeps concurrent readers from restoring the wrong value.
_PIL_LIMIT_LOCK = threading.Lock()

_SNIFF_BYTES = 512


class ImageReadError(ValueError):
    """An image could not be read. ``str(err)`` names the file and the problem in plain words."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_image(
    source: Any,
    *,
    name: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read ``source`` as a contiguous ``uint8`` ``(H, W, 3)`` RGB array.

    ``source`` may be a path (``str`` or :class:`~pathlib.Path`), ``bytes``, a binary file-like
    object, a PIL image or a numpy array (see :func:`array_to_rgb`). ``name`` is used in error
    messages (default: the path, the stream's name, ``"<bytes>"``...). ``max_pixels`` limits
    width x height (``None``: no limit). Every failure raises :class:`ImageReadError`.
    """
    if isinstance(source, np.ndarray):
        return array_to_rgb(source, name=name or "<array>", max_pixels=max_pixels)
    if isinstance(source, Image.Image):
        label = name or _pil_name(source)
        return _decode(source, label, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        return _read_bytes(bytes(source), label, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return _read_path(Path(source), name or str(source), max_pixels)
    if hasattr(source, "read"):
        label = name or _stream_name(source)
        try:
            data = source.read()
        except OSError as exc:
            raise ImageReadError(label, f"could not read the stream ({_os_reason(exc)})") from exc
        if isinstance(data, str):
            raise ImageReadError(label, "the stream is opened in text mode; open it in binary mode ('rb')")
        return _read_bytes(bytes(data), label, max_pixels)
    raise ImageReadError(
        name or f"<{type(source).__name__}>",
        f"cannot read an image from a {type(source).__name__}; "
        "pass a path, bytes, a binary file, a PIL image or a numpy array",
    )


def _pil_name(image: Image.Image) -> str:
    filename = getattr(image, "filename", None)
    return str(filename) if filename else "<image>"


def _stream_name(stream: Any) -> str:
    value = getattr(stream, "name", None)
    return str(value) if isinstance(value, (str, os.PathLike)) else "<stream>"


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _read_path(path: Path, label: str, max_pixels: int | None) -> np.ndarray:
    try:
        if not os.path.lexists(path):
            raise ImageReadError(label, "file not found")
        if path.is_symlink() and not path.exists():
            raise ImageReadError(label, "broken symbolic link (its target does not exist)")
        if path.is_dir():
            raise ImageReadError(label, "is a directory, not an image file")
        if not path.is_file():
            raise ImageReadError(label, "is not a regular file")
        size = path.stat().st_size
    except OSError as exc:
        raise ImageReadError(label, f"cannot access the file ({_os_reason(exc)})") from exc
    if size == 0:
        raise ImageReadError(label, "file is empty (0 bytes)")
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise ImageReadError(label, f"cannot open the file ({_os_reason(exc)})") from exc
    with handle:
        return _read_stream(handle, label, max_pixels)


def _read_bytes(data: bytes, label: str, max_pixels: int | None) -> np.ndarray:
    if not data:
        raise ImageReadError(label, "no data (0 bytes)")
    return _read_stream(io.BytesIO(data), label, max_pixels)


def _read_stream(stream: BinaryIO, label: str, max_pixels: int | None) -> np.ndarray:
    start = stream.tell()
    head = stream.read(_SNIFF_BYTES)
    stream.seek(start)
    try:
        image = _open_with_limit(stream, max_pixels)
    except UnidentifiedImageError as exc:
        raise ImageReadError(label, _describe_unknown(head)) from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(label, _bomb_message(str(exc), max_pixels)) from exc
    except Image.DecompressionBombWarning as exc:  # only when warnings are turned into errors
        raise ImageReadError(label, _bomb_message(str(exc), max_pixels)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
        raise ImageReadError(label, f"corrupt or unreadable image header ({exc})") from exc
    with image:
        return _decode(image, label, max_pixels)


def _open_with_limit(stream: BinaryIO, max_pixels: int | None) -> Image.Image:
    pil_limit = Image.MAX_IMAGE_PIXELS
    if pil_limit is None or (max_pixels is not None and max_pixels <= pil_limit):
        return Image.open(stream)
    # Our limit is looser than Pillow's: lift Pillow's while the header is parsed; the size is
    # checked against ``max_pixels`` right after.
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(stream)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _bomb_message(pil_message: str, max_pixels: int | None) -> str:
    match = re.search(r"\((\d+) pixels\)", pil_message)
    pixels = f"{int(match.group(1)):,} pixels" if match else "too many pixels"
    limit = f"{max_pixels:,}" if max_pixels is not None else "the image library's"
    return f"image is too large: {pixels}, more than the limit of {limit} pixels (possible decompression bomb)"


def _check_size(width: int, height: int, label: str, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(label, f"image has no pixels ({width} x {height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            label,
            f"image is too large: {width} x {height} = {width * height:,} pixels, "
            f"more than the limit of {max_pixels:,} pixels (max_pixels)",
        )


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


def _describe_unknown(head: bytes) -> str:
    """A plain-words guess of what a file that is not a readable image actually is."""
    for signature, fmt in _SIGNATURES:
        if head.startswith(signature) and (fmt != "BMP" or len(head) >= 26):
            return f"truncated or corrupt image data (it starts like a {fmt} file but cannot be decoded)"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "truncated or corrupt image data (it starts like a WebP file but cannot be decoded)"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "not an image: this looks like an HTML web page (was a download redirected?)"
    if stripped.startswith(b"<svg") or (stripped.startswith(b"<?xml") and b"<svg" in stripped):
        return "not supported: SVG vector images cannot be read; export it as PNG"
    if head.startswith(b"%PDF"):
        return "not an image: this is a PDF document; convert its pages to PNG first"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif"):
        return "not supported: HEIC/HEIF/AVIF images cannot be read; convert it to JPEG or PNG"
    if head.startswith(b"PK\x03\x04"):
        return "not an image: this is a ZIP archive"
    if head and _looks_like_text(head):
        return "not an image: this is a text file"
    return "not an image or an unknown image format"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character may be cut at the end of the sniffed bytes.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return printable >= 0.95 * max(1, len(text))


def _decode(image: Image.Image, label: str, max_pixels: int | None) -> np.ndarray:
    width, height = image.size
    _check_size(width, height, label, max_pixels)
    try:
        image.load()  # full decode: truncated or corrupt data fails here
    except Image.DecompressionBombError as exc:
        raise ImageReadError(label, _bomb_message(str(exc), max_pixels)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError) as exc:
        detail = str(exc) or type(exc).__name__
        raise ImageReadError(label, f"truncated or corrupt image data ({detail})") from exc
    except MemoryError as exc:
        raise ImageReadError(label, f"not enough memory to decode a {width} x {height} image") from exc
    try:
        oriented = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not make a good image unreadable
        oriented = image
    if oriented is None:
        oriented = image
    try:
        return pil_to_rgb(oriented)
    except ValueError as exc:
        raise ImageReadError(label, str(exc)) from exc


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Convert a loaded PIL image of any common mode to a contiguous ``uint8`` RGB array.

    Transparency is composited onto white; 16-bit, 32-bit integer and float data are scaled
    as described in the module documentation. Raises ``ValueError`` for unknown modes.
    """
    mode = image.mode
    has_transparency = "transparency" in image.info
    if mode == "RGB" and not has_transparency:
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if mode in ("1", "L") and not has_transparency:
        grey = np.asarray(image.convert("L"), dtype=np.uint8)
        return _grey_to_rgb(grey)
    if mode.startswith("I;16"):
        return _grey_to_rgb(_scale_16bit(np.asarray(image).astype(np.uint32)))
    if mode == "I":
        return _grey_to_rgb(_scale_int(np.asarray(image)))
    if mode == "F":
        return _grey_to_rgb(_scale_float_image(np.asarray(image, dtype=np.float64)))
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or has_transparency:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return _composite_on_white(rgba)
    if mode in ("P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "L", "1"):
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    try:
        converted = image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ValueError(f"unsupported image mode {mode!r}") from exc
    return np.ascontiguousarray(np.asarray(converted, dtype=np.uint8))


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 with rounding (65535 maps to 255, 257 to 1)."""
    values = np.clip(values, 0, 65535).astype(np.uint32)
    return ((values + 128) // 257).astype(np.uint8)


def _scale_int(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.int64)
    if values.size and values.max() > 255:
        return _scale_16bit(values)
    return np.clip(values, 0, 255).astype(np.uint8)


def _scale_float_image(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    top = float(values.max()) if values.size else 0.0
    if top <= 1.0:
        scaled = values * 255.0
    elif top <= 255.0:
        scaled = values
    else:
        scaled = values / 257.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(out.astype(np.uint8))


def array_to_rgb(
    array: np.ndarray, *, name: str = "<array>", max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Convert a numpy image to a contiguous ``uint8`` ``(H, W, 3)`` RGB array.

    Shapes ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` and ``(H, W, 4)`` (RGBA, composited onto
    white). Dtypes ``uint8``; ``uint16`` (scaled by 1/257); ``bool`` (0/255); float in [0, 1]
    (scaled by 255); other integer types only when every value lies in 0..255.
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        channels = arr.shape[2]
    elif arr.ndim == 2:
        channels = 0
    else:
        raise ImageReadError(
            name,
            f"unsupported array shape {arr.shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)",
        )
    height, width = arr.shape[:2]
    if height == 0 or width == 0:
        raise ImageReadError(name, f"the array is empty (shape {arr.shape})")
    _check_size(width, height, name, max_pixels)
    arr = _array_to_uint8(arr, name)
    if channels == 0:
        return _grey_to_rgb(arr)
    if channels == 1:
        return _grey_to_rgb(arr[:, :, 0])
    if channels == 4:
        return _composite_on_white(arr)
    return np.ascontiguousarray(arr)


def _array_to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    dtype = arr.dtype
    if dtype == np.uint8:
        return arr
    if dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if dtype == np.uint16:
        return _scale_16bit(arr)
    if np.issubdtype(dtype, np.floating):
        values = arr.astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageReadError(name, f"the {dtype} array contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ImageReadError(
                name,
                f"float arrays must hold values in [0, 1]; this one spans [{low:g}, {high:g}] "
                "(divide by 255 if it holds 8-bit values)",
            )
        return np.rint(values * 255.0).astype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 255:
            raise ImageReadError(
                name,
                f"unsupported array dtype {dtype} with values in [{low}, {high}]; "
                "use uint8 (0..255), uint16, bool or float in [0, 1]",
            )
        return arr.astype(np.uint8)
    raise ImageReadError(
        name, f"unsupported array dtype {dtype}; use uint8, uint16, bool or float in [0, 1]"
    )


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync_directory(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    The data is flushed and fsynced before :func:`os.replace`. If the block raises, the temporary
    file is removed and ``path`` is left as it was. Parent folders are created.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name[:40]}.", suffix=".tmp", dir=target.parent)
    try:
        if mode == "w":
            handle = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="")
        else:
            handle = os.fdopen(fd, "wb")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_UMASK)
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(target.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_writer`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as UTF-8 JSON (non-ASCII kept as is) to ``path`` atomically."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    return atomic_write_text(path, text + "\n")


def _to_pil_for_png(image: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or 0 in arr.shape:
        raise ValueError(f"cannot save an array of shape {arr.shape} as PNG")
    if arr.dtype == np.bool_:
        if arr.ndim != 2:
            raise ValueError("boolean arrays must be (H, W) masks")
        return Image.fromarray(arr.astype(np.uint8) * 255, mode="L")
    if arr.dtype == np.uint16 and arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr))
    if arr.dtype != np.uint8:
        raise ValueError(f"cannot save a {arr.dtype} array as PNG; use uint8 (or bool / uint16 masks)")
    return Image.fromarray(np.ascontiguousarray(arr))


def save_png_atomic(path: str | os.PathLike, image: np.ndarray | Image.Image, *, compress_level: int = 6) -> Path:
    """Save an array or PIL image as PNG at ``path`` atomically.

    ``uint8`` ``(H, W)`` is saved as greyscale (values kept, e.g. a 0/1/2 label map), ``bool``
    ``(H, W)`` as 0/255, ``uint16`` ``(H, W)`` as 16-bit greyscale, ``(H, W, 3|4)`` as RGB/RGBA.
    The image is encoded in memory first, so an encoding error never touches ``path``.
    """
    pil = _to_pil_for_png(image)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", compress_level=compress_level)
    return atomic_write_bytes(path, buffer.getvalue())
