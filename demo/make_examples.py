"""Draw the small example images in ``assets/examples`` (run once; the files are committed).

``python -m demo.make_examples`` rewrites them. Everything is drawn with PIL from a fixed seed, so
the images are synthetic (no third-party photos) and reproducible on a machine with the same fonts.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "examples"

_FONT_FILES = {
    "sans-bold": ["DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf"],
    "sans": ["DejaVuSans.ttf", "LiberationSans-Regular.ttf"],
    "serif": ["DejaVuSerif.ttf", "LiberationSerif-Regular.ttf"],
    "mono": ["DejaVuSansMono.ttf", "LiberationMono-Regular.ttf"],
}
_FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"),
              Path("/usr/share/fonts/TTF"), Path("/Library/Fonts"), Path("C:/Windows/Fonts")]


def font(kind: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in _FONT_FILES[kind]:
        for folder in _FONT_DIRS:
            if (folder / name).is_file():
                return ImageFont.truetype(str(folder / name), size)
    return ImageFont.load_default(size=size)


def street_sign(rng: random.Random) -> Image.Image:
    """A shop sign on a brick wall under a sky: a scene-text photo look-alike."""
    w, h = 256, 192
    yy = np.linspace(0, 1, h)[:, None, None]
    sky = (np.array([120, 170, 225]) * (1 - yy) + np.array([200, 220, 240]) * yy) * np.ones((h, w, 3))
    img = Image.fromarray(sky.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 60, w, h], fill=(150, 82, 60))
    for row, y in enumerate(range(60, h, 12)):
        draw.line([0, y, w, y], fill=(190, 180, 170), width=1)
        for x in range(-((row % 2) * 12), w, 24):
            draw.line([x, y, x, y + 12], fill=(190, 180, 170), width=1)
    draw.rounded_rectangle([34, 78, 222, 150], radius=8, fill=(24, 60, 40), outline=(210, 180, 60), width=4)
    draw.text((128, 102), "CAFE", font=font("sans-bold", 34), fill=(250, 236, 200), anchor="mm")
    draw.text((128, 134), "open 7 - 22h", font=font("sans", 14), fill=(230, 210, 120), anchor="mm")
    draw.rectangle([180, 160, 236, 192], fill=(60, 50, 45))
    draw.text((208, 176), "No 12", font=font("sans", 11), fill=(240, 240, 240), anchor="mm")
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 5, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))


def document(rng: random.Random) -> Image.Image:
    """A paragraph of printed text on slightly uneven paper."""
    w, h = 256, 200
    paper = np.full((h, w, 3), (246, 242, 232), np.float32)
    paper += np.random.default_rng(rng.randrange(1 << 30)).normal(0, 3, (h, w, 1))
    img = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.text((16, 12), "Section 2. Terms", font=font("serif", 16), fill=(20, 20, 30))
    lines = [
        "The tenant shall pay the rent",
        "on the first day of each month",
        "by bank transfer. Late payment",
        "incurs a fee of 5 percent of the",
        "amount due. This agreement ends",
        "on 31 March unless renewed in",
        "writing by both parties.",
    ]
    body = font("serif", 12)
    for i, line in enumerate(lines):
        draw.text((16, 40 + i * 18), line, font=body, fill=(35, 35, 45))
    draw.text((150, 172), "Signed: J. Doe", font=font("serif", 11), fill=(20, 40, 120))
    return img


def receipt(rng: random.Random) -> Image.Image:
    """A till receipt: monospaced items and a total (a typical tampering target)."""
    w, h = 160, 240
    img = Image.new("RGB", (w, h), (238, 238, 232))
    draw = ImageDraw.Draw(img)
    draw.rectangle([10, 0, w - 10, h], fill=(252, 252, 248))
    mono, bold = font("mono", 11), font("sans-bold", 14)
    draw.text((w // 2, 16), "CORNER SHOP", font=bold, fill=(10, 10, 10), anchor="mm")
    draw.text((w // 2, 32), "2024-05-17 18:42", font=mono, fill=(40, 40, 40), anchor="mm")
    items = [("Bread", "2.40"), ("Milk 1L", "1.15"), ("Apples", "3.20"), ("Coffee", "6.90"), ("Soap", "1.80")]
    y = 52
    for name, price in items:
        draw.text((18, y), name, font=mono, fill=(30, 30, 30))
        draw.text((w - 18, y), price, font=mono, fill=(30, 30, 30), anchor="ra")
        y += 18
    draw.line([18, y + 2, w - 18, y + 2], fill=(80, 80, 80), width=1)
    draw.text((18, y + 10), "TOTAL", font=font("mono", 13), fill=(0, 0, 0))
    draw.text((w - 18, y + 10), "15.45", font=font("mono", 13), fill=(0, 0, 0), anchor="ra")
    draw.text((w // 2, h - 24), "Thank you!", font=mono, fill=(60, 60, 60), anchor="mm")
    img = img.rotate(rng.uniform(-2, 2), resample=Image.BICUBIC, fillcolor=(200, 200, 196))
    return img


def main() -> None:
    rng = random.Random(2024)
    EXAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    street_sign(rng).save(EXAMPLES_DIR / "street_sign.jpg", quality=90)
    document(rng).save(EXAMPLES_DIR / "document.png", optimize=True)
    receipt(rng).save(EXAMPLES_DIR / "receipt.png", optimize=True)
    for path in sorted(EXAMPLES_DIR.iterdir()):
        print(f"{path.name}: {path.stat().st_size / 1024:.1f} KB")


if __name__ == "__main__":
    main()
