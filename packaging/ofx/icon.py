"""Writes a 128x128 PNG icon per plugin identifier: a disc in Soragen's sky colours, its hue
set by the effect, so the four effects are told apart in a host's node menu."""

import colorsys
import struct
import sys
import zlib
from pathlib import Path

SIZE = 128


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def icon(hue: float) -> bytes:
    rows = []
    for y in range(SIZE):
        row = bytearray([0])  # filter: none
        for x in range(SIZE):
            dx, dy = (x - SIZE / 2 + 0.5) / (SIZE / 2), (y - SIZE / 2 + 0.5) / (SIZE / 2)
            r = (dx * dx + dy * dy) ** 0.5
            light = 0.35 + 0.45 * (1 - y / SIZE)
            red, green, blue = colorsys.hls_to_rgb(hue, light, 0.7)
            alpha = max(0.0, min(1.0, (1 - r) * SIZE / 2))
            row += bytes(int(round(c * 255)) for c in (red, green, blue, alpha))
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b"")


def main() -> None:
    folder, identifiers = Path(sys.argv[1]), sys.argv[2:]
    for index, identifier in enumerate(identifiers):
        (folder / f"{identifier}.png").write_bytes(icon(0.55 + index / max(len(identifiers), 1) * 0.3))


if __name__ == "__main__":
    main()
