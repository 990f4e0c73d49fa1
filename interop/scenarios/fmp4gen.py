#!/usr/bin/env python3
"""A tiny fragmented MP4 (H.264 video, one sample per fragment) for
`moq import fmp4` without ffmpeg, and a checker for what comes out. Each sample
is one length-prefixed NAL whose body is a known marker, "moq-interop frame N",
so the bytes can be checked end to end. A keyframe starts every GOP samples.

    fmp4gen.py init                      > init.mp4   (ftyp + moov)
    fmp4gen.py frags FRAMES GOP [DELAY]  > frags.mp4  (moof + mdat each; DELAY s between)
    fmp4gen.py samples FRAMES GOP                      (each sample's hex, one per line)
    fmp4gen.py mdat FILE                               (hex of every mdat body in an fMP4 file)
    fmp4gen.py frames FILE                             (same, per frame of `moq subscribe --format
                                                        binary` output: 4-byte length + payload)
    fmp4gen.py fetch FILE mdat|text                    (per frame of `moq fetch --json` output:
                                                        "GROUP FRAME " + mdat hex, or the payload text)
    fmp4gen.py replay FILE init|frags [DELAY]          (an existing fMP4, e.g. from ffmpeg, in two parts:
                                                        the boxes before the first moof, or each
                                                        moof with what follows it, DELAY s apart)
"""
import base64
import json
import struct
import sys
import time

TIMESCALE = 1000
DURATION = 40  # 25 fps
WIDTH = HEIGHT = 16
# A valid baseline SPS (16x16, POC type 2) and PPS.
SPS = bytes.fromhex("6742c01eda79")
PPS = bytes.fromhex("68ce3c80")


def box(kind, *parts):
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full(kind, version, flags, *parts):
    return box(kind, struct.pack(">I", (version << 24) | flags), *parts)


MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def init_segment():
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso6", b"mp41")
    mvhd = full(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, TIMESCALE, 0),
                struct.pack(">IH", 0x10000, 0x100), bytes(10), MATRIX, bytes(24), struct.pack(">I", 2))
    tkhd = full(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, 0), bytes(8),
                struct.pack(">HHHH", 0, 0, 0, 0), MATRIX, struct.pack(">II", WIDTH << 16, HEIGHT << 16))
    mdhd = full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, TIMESCALE, 0, 0x55C4, 0))
    hdlr = full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\0")
    vmhd = full(b"vmhd", 0, 1, bytes(8))
    dinf = box(b"dinf", full(b"dref", 0, 0, struct.pack(">I", 1), full(b"url ", 0, 1)))
    avcc = box(b"avcC", bytes([1, SPS[1], SPS[2], SPS[3], 0xFF, 0xE1]), struct.pack(">H", len(SPS)), SPS,
               bytes([1]), struct.pack(">H", len(PPS)), PPS)
    avc1 = box(b"avc1", bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HH", WIDTH, HEIGHT),
               struct.pack(">III", 0x480000, 0x480000, 0), struct.pack(">H", 1), bytes(32),
               struct.pack(">Hh", 0x18, -1), avcc)
    stsd = full(b"stsd", 0, 0, struct.pack(">I", 1), avc1)
    stbl = box(b"stbl", stsd, full(b"stts", 0, 0, bytes(4)), full(b"stsc", 0, 0, bytes(4)),
               full(b"stsz", 0, 0, bytes(8)), full(b"stco", 0, 0, bytes(4)))
    minf = box(b"minf", vmhd, dinf, stbl)
    trak = box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf))
    mvex = box(b"mvex", full(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0)))
    return ftyp + box(b"moov", mvhd, trak, mvex)


def sample(i, keyframe):
    nal = bytes([0x65 if keyframe else 0x41]) + f"moq-interop frame {i}".encode()
    return struct.pack(">I", len(nal)) + nal


def fragment(i, keyframe):
    data = sample(i, keyframe)
    flags = 0x02000000 if keyframe else 0x01010000
    def moof(offset):
        trun = full(b"trun", 0, 0x000701, struct.pack(">IiIII", 1, offset, DURATION, len(data), flags))
        traf = box(b"traf", full(b"tfhd", 0, 0x020000, struct.pack(">I", 1)),
                   full(b"tfdt", 1, 0, struct.pack(">Q", i * DURATION)), trun)
        return box(b"moof", full(b"mfhd", 0, 0, struct.pack(">I", i + 1)), traf)
    size = len(moof(0))
    return moof(size + 8) + box(b"mdat", data)


def mdat_bodies(data):
    """The body of every top-level mdat in a run of boxes."""
    out, off = [], 0
    while off + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[off:off + 8])
        if size < 8 or off + size > len(data):
            raise SystemExit(f"truncated or bad box at {off}: size {size}")
        if kind == b"mdat":
            out.append(data[off + 8:off + size])
        off += size
    return out


def boxes(data):
    """(kind, bytes) of every top-level box in a run of boxes."""
    out, off = [], 0
    while off + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[off:off + 8])
        if size < 8 or off + size > len(data):
            raise SystemExit(f"truncated or bad box at {off}: size {size}")
        out.append((kind, data[off:off + size]))
        off += size
    return out


def replay(path, part, delay):
    """Write an fMP4 file's init boxes, or its fragments one by one."""
    out = sys.stdout.buffer
    fragments, init = [], b""
    for kind, raw in boxes(open(path, "rb").read()):
        if kind == b"moof":
            fragments.append(raw)
        elif fragments:
            fragments[-1] += raw
        else:
            init += raw
    if part == "init":
        out.write(init)
        return
    for fragment in fragments:
        out.write(fragment)
        out.flush()
        if delay:
            time.sleep(delay)


def binary_frames(data):
    """Frames of `moq subscribe --format binary` output."""
    out, off = [], 0
    while off + 4 <= len(data):
        (n,) = struct.unpack(">I", data[off:off + 4])
        out.append(data[off + 4:off + 4 + n])
        off += 4 + n
    return out


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    out = sys.stdout.buffer
    if cmd == "init":
        out.write(init_segment())
    elif cmd == "frags":
        frames, gop = int(args[0]), int(args[1])
        delay = float(args[2]) if len(args) > 2 else 0.0
        for i in range(frames):
            out.write(fragment(i, i % gop == 0))
            out.flush()
            if delay:
                time.sleep(delay)
    elif cmd == "samples":
        frames, gop = int(args[0]), int(args[1])
        for i in range(frames):
            print(sample(i, i % gop == 0).hex())
    elif cmd == "mdat":
        for body in mdat_bodies(open(args[0], "rb").read()):
            print(body.hex())
    elif cmd == "frames":
        for frame in binary_frames(open(args[0], "rb").read()):
            bodies = mdat_bodies(frame)
            print(",".join(b.hex() for b in bodies))
    elif cmd == "replay":
        replay(args[0], args[1], float(args[2]) if len(args) > 2 else 0.0)
    elif cmd == "fetch":
        for line in open(args[0], encoding="utf-8"):
            if not line.strip():
                continue
            frame = json.loads(line)
            payload = base64.b64decode(frame["payload"])
            if args[1] == "mdat":
                body = ",".join(b.hex() for b in mdat_bodies(payload))
            else:
                body = payload.decode("utf-8", "replace")
            print(frame["group"], frame["frame"], body)
    else:
        raise SystemExit(f"unknown command {cmd}")
    out.flush()


if __name__ == "__main__":
    main()
