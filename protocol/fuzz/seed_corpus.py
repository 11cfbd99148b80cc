#!/usr/bin/env python3
"""Seed corpus/decode_frame/ from the golden captures in ../tests/fixtures/*.hex.

Each seed is `[frame_max selector, split selector] + bytes`: every single frame of every capture
(under a few frame_max choices), plus a run of consecutive frames from each stream. Stdlib only.
"""

import hashlib
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures"
OUT = HERE / "corpus" / "decode_frame"


def frames(stream: bytes):
    i = 0
    while i + 7 <= len(stream):
        size = struct.unpack(">I", stream[i + 3 : i + 7])[0]
        end = i + 8 + size
        if end > len(stream):
            return
        yield stream[i:end]
        i = end


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    seeds = set()
    files = sorted(FIXTURES.glob("*.hex"))
    if not files:
        raise SystemExit(f"no fixtures in {FIXTURES}")
    for path in files:
        data = bytes.fromhex(path.read_text().replace("\n", ""))
        if path.name.endswith(".c2s.hex"):
            data = data[8:]
        all_frames = list(frames(data))
        for f in all_frames:
            if len(f) > 4096:  # big bodies add nothing but time
                f = f[:4096]
            for selector in (0, 1, 2):
                seeds.add(bytes([selector, 128]) + f)
        for start in range(0, len(all_frames), 16):
            run = b"".join(all_frames[start : start + 16])[:16384]
            seeds.add(bytes([0, 100]) + run)
    for seed in seeds:
        (OUT / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    print(f"{len(seeds)} seeds in {OUT}")


if __name__ == "__main__":
    main()
