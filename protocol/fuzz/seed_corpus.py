#!/usr/bin/env python3
"""Seed corpus/decode_frame/ and corpus/connection/ from the golden captures in
../tests/fixtures/*.hex.

decode_frame: each seed is `[frame_max selector, split selector] + bytes`: every single frame of
every capture (under a few frame_max choices), plus a run of consecutive frames from each stream.
connection: each client-to-server capture whole (`[0] + stream`, handshake included), and its
frames after connection.open behind the target's own handshake (`[1] + frames`), whole and in
runs of 16 frames. Stdlib only.
"""

import hashlib
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures"
OUT = HERE / "corpus" / "decode_frame"
CONN_OUT = HERE / "corpus" / "connection"


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
    connection_seeds(files)


def is_connection_open(frame: bytes) -> bool:
    return frame[0] == 1 and frame[7:11] == struct.pack(">HH", 10, 40)


def connection_seeds(files) -> None:
    CONN_OUT.mkdir(parents=True, exist_ok=True)
    seeds = set()
    for path in files:
        if not path.name.endswith(".c2s.hex"):
            continue
        data = bytes.fromhex(path.read_text().replace("\n", ""))
        seeds.add(bytes([0]) + data[:65536])
        all_frames = list(frames(data[8:]))
        opened = next((i for i, f in enumerate(all_frames) if is_connection_open(f)), None)
        if opened is None:
            continue
        after = [f[:4096] if len(f) > 4096 else f for f in all_frames[opened + 1 :]]
        seeds.add(bytes([1]) + b"".join(after)[:65536])
        for start in range(0, len(after), 16):
            seeds.add(bytes([1]) + b"".join(after[start : start + 16]))
    for seed in seeds:
        (CONN_OUT / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    print(f"{len(seeds)} seeds in {CONN_OUT}")


if __name__ == "__main__":
    main()
