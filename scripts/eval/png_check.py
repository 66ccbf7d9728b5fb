#!/usr/bin/env python3
"""Fails unless PNG is a decodable 8-bit RGB/RGBA/grey PNG that is not (nearly) one flat colour.

Decodes with zlib and struct only (no PIL): reads IHDR, inflates the IDAT stream, undoes the
per-row filters (None, Sub, Up, Average, Paeth), then counts colours. A rendered report has text,
table borders and bars: it needs at least MIN_COLOURS distinct colours and at least MIN_INK of
its pixels differing from the most common (background) colour.

  python3 scripts/eval/png_check.py shot.png
"""
import struct
import sys
import zlib
from collections import Counter

MIN_COLOURS = 16
MIN_INK = 0.01


def decode(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG")
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    if hdr is None:
        raise SystemExit(f"{path}: no IHDR")
    w, h, depth, ctype, _, _, interlace = hdr
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise SystemExit(f"{path}: unsupported PNG (depth {depth}, colour type {ctype}, "
                         f"interlace {interlace})")
    raw = zlib.decompress(idat)
    stride = w * channels
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            elif f != 0:
                raise SystemExit(f"{path}: bad filter {f} on row {y}")
        rows.append(bytes(line))
        prev = line
    return w, h, channels, rows


def main():
    path = sys.argv[1]
    w, h, ch, rows = decode(path)
    counts = Counter()
    for row in rows[::2]:  # every other row is plenty
        counts.update(row[i:i + ch] for i in range(0, len(row), ch))
    total = sum(counts.values())
    background, n_bg = counts.most_common(1)[0]
    ink = 1 - n_bg / total
    print(f"{path}: {w}x{h}, {len(counts)} colours, {ink:.1%} of pixels not background")
    if len(counts) < MIN_COLOURS or ink < MIN_INK:
        raise SystemExit(f"{path}: looks blank ({len(counts)} colours, {ink:.2%} ink)")


if __name__ == "__main__":
    main()
