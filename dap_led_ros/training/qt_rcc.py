"""Qt binary resource files (.rcc, as `rcc -binary` writes them): the files they hold.

Layout (big-endian): b"qres", u32 version, tree / payload / name offsets, (version >= 3) u32
flags. Tree nodes (14 bytes in version 1, 22 later): u32 name offset, u16 flags (0x02 folder,
0x01 zlib, 0x04 zstd), then a folder's u32 child count and first child index, or a file's u16
territory, u16 language and u32 payload offset. Names: u16 length, u32 hash, UTF-16BE. Payloads:
u32 size then the bytes; zlib payloads start with their u32 uncompressed size.
"""
from __future__ import annotations

import struct
import zlib

_RCC_DIR, _RCC_ZLIB, _RCC_ZSTD = 0x02, 0x01, 0x04


class RccError(ValueError):
    """Not a Qt binary resource file, or a damaged one."""


def read_rcc(data: bytes) -> dict[str, bytes]:
    """All files of a Qt binary resource (.rcc) as {"dir/sub/name": uncompressed bytes}."""
    if data[:4] != b"qres":
        raise RccError("no 'qres' magic")
    try:
        version, tree, payloads, names = struct.unpack_from(">IIII", data, 4)
        node_size = 14 if version == 1 else 22

        def name_at(offset: int) -> str:
            (length,) = struct.unpack_from(">H", data, names + offset)
            start = names + offset + 6  # u16 length, u32 hash, then UTF-16BE characters
            return data[start:start + 2 * length].decode("utf-16-be")

        def payload_at(offset: int, flags: int) -> bytes:
            (size,) = struct.unpack_from(">I", data, payloads + offset)
            raw = data[payloads + offset + 4:payloads + offset + 4 + size]
            if flags & _RCC_ZLIB:
                return zlib.decompress(raw[4:])  # after a big-endian u32 uncompressed size
            if flags & _RCC_ZSTD:
                import zstandard  # only rcc files built with zstd need it

                return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
            return raw

        files: dict[str, bytes] = {}
        stack = [(0, "")]  # (node index, path of the node); node 0 is the nameless root
        while stack:
            index, path = stack.pop()
            offset = tree + index * node_size
            _, flags = struct.unpack_from(">IH", data, offset)
            if flags & _RCC_DIR:
                count, first = struct.unpack_from(">II", data, offset + 6)
                for child in range(first, first + count):
                    (child_name,) = struct.unpack_from(">I", data, tree + child * node_size)
                    stack.append((child, f"{path}/{name_at(child_name)}" if path else name_at(child_name)))
            else:
                (data_offset,) = struct.unpack_from(">I", data, offset + 10)  # after territory, language
                files[path] = payload_at(data_offset, flags)
    except (struct.error, zlib.error, UnicodeDecodeError) as exc:
        raise RccError(f"damaged rcc file: {exc}") from exc
    return dict(sorted(files.items()))
