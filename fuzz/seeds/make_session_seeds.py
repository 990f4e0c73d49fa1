#!/usr/bin/env python3
"""Write starting inputs for the `session` fuzz target into fuzz/seeds/session/.

Each seed is a script in the layout `src/session.rs` documents: a version byte,
a flags byte, then operations. Two scripts per version: a subscriber (announce
interest, subscribe to the relay's `clock`, fetch, track info) and a publisher
(answers the relay's announce interest, announces `live/cam`, serves the
subscription a local viewer causes with a group). They only need to be
plausible: the fuzzer takes it from there. Replay one with
`MOQ_FUZZ_TRACE=1 cargo fuzz run -a session seeds/session/<file>` to see it.
"""

import os
import sys

OPS = [
    "OpenBi", "OpenUni", "WriteRaw", "WriteMessage", "Finish", "Reset", "Stop",
    "DropSend", "DropRecv", "AcceptBi", "AcceptUni", "Read", "Datagram", "Sleep",
    "Close", "Drain", "LocalSubscribe", "LocalUnsubscribe", "LocalGroup", "LocalEnd",
]
PATHS = ["", "clock", "anon", "anon/clock", "live", "live/cam", "a/b/c", "clock/x",
         "other", "..", "x//y/", ".internal/origins/n"]
TRACKS = ["seconds", "", "video", "x"]
VERSIONS = ["lite-01", "lite-02", "lite-03", "lite-04", "lite-05", "lite-06"]
CONTROL = ["Session", "Announce", "Subscribe", "Fetch", "Probe", "Goaway", "Track"]
SLEEP_MS = [1, 10, 100, 500, 1000, 5000, 10000, 30000]


def num(v):
    if v < 1 << 6:
        return bytes([v])
    if v < 1 << 14:
        return bytes([0x40 | v >> 8, v & 0xFF])
    if v < 1 << 30:
        return bytes([0x80 | v >> 24]) + (v & 0xFFFFFF).to_bytes(3, "big")
    return bytes([0xC0]) + v.to_bytes(8, "big")


def path(p):
    return bytes([PATHS.index(p)])


def track(t):
    return bytes([TRACKS.index(t)])


def opt(v):
    return b"\x00" if v is None else b"\x01" + num(v)


def hops(ids):
    return bytes([len(ids)]) + b"".join(num(i) for i in ids)


class Script:
    def __init__(self, version, flags):
        self.version = version
        self.out = bytearray([version, flags])
        self.sends = []
        self.recvs = []
        if flags & 1:
            if version < 2:
                self.sends.append("session")
                self.recvs.append("session")
            elif version >= 4:
                self.sends.append("setup")

    def op(self, name, args=b""):
        self.out += bytes([OPS.index(name)]) + args

    def open_bi(self, label):
        self.op("OpenBi")
        self.sends.append(label)
        self.recvs.append(label)

    def open_uni(self, label):
        self.op("OpenUni")
        self.sends.append(label)

    def accept_bi(self, label):
        self.op("AcceptBi")
        self.sends.append(label)
        self.recvs.append(label)

    def accept_uni(self, label):
        self.op("AcceptUni")
        self.recvs.append(label)

    def msg(self, label, kind, body=b""):
        self.op("WriteMessage", bytes([self.sends.index(label), kind]) + body)

    def read(self, label):
        self.op("Read", bytes([self.recvs.index(label)]))

    def finish(self, label):
        self.op("Finish", bytes([self.sends.index(label)]))

    def sleep(self, ms):
        self.op("Sleep", bytes([SLEEP_MS.index(ms)]))


def control(kind):
    return bytes([CONTROL.index(kind)])


def subscriber(v):
    s = Script(v, 0b1001)  # SETUP, root `anon`, everything allowed
    s.open_bi("announce")
    s.msg("announce", 0, control("Announce"))
    s.msg("announce", 2, path("") + num(0))
    s.read("announce")
    s.open_bi("sub")
    s.msg("sub", 0, control("Subscribe"))
    # id 1, clock/seconds, priority 1, unordered, 1000 ms, no range
    s.msg("sub", 6, num(1) + path("clock") + track("seconds") + b"\x01\x00" + num(1000)
          + opt(None) + opt(None) + num(0) + opt(None))
    s.read("sub")
    s.accept_uni("group")
    s.read("group")
    s.op("LocalGroup", b"\x03")
    s.accept_uni("group2")
    s.read("group2")
    if v >= 2:
        # SUBSCRIBE_UPDATE: priority 5, ordered, 500 ms
        s.msg("sub", 7, b"\x05\x01" + num(500) + opt(None) + opt(None) + num(0) + opt(None))
    if v >= 4:
        s.open_bi("fetch")
        s.msg("fetch", 0, control("Fetch"))
        s.msg("fetch", 9, path("clock") + track("seconds") + b"\x01" + num(0) + num(0) + opt(None))
        s.read("fetch")
        s.open_bi("track")
        s.msg("track", 0, control("Track"))
        s.msg("track", 10, path("clock") + track("seconds"))
        s.read("track")
    s.sleep(1000)
    s.finish("sub")
    s.finish("announce")
    s.sleep(100)
    return bytes(s.out)


def publisher(v):
    s = Script(v, 0b0001)  # SETUP, relay root, everything allowed
    s.accept_bi("interest")
    s.read("interest")
    if v < 2:
        s.msg("interest", 4, b"\x01" + path("live/cam"))  # ANNOUNCE_INIT
    else:
        if v >= 4:
            s.msg("interest", 3, num(99) + num(1))  # ANNOUNCE_OK
        s.msg("interest", 5, b"\x00" + path("live/cam") + hops([]) + num(0) + num(0))
    s.op("LocalSubscribe", path("live/cam") + track("video"))
    s.accept_bi("sub")
    s.read("sub")
    if v >= 4:
        s.accept_bi("track")
        s.read("track")
        s.msg("track", 11, b"\x02\x00" + num(2000) + num(1000))  # TRACK_INFO
        s.msg("sub", 8, b"\x01" + num(0))  # SUBSCRIBE_START at group 0
    else:
        s.msg("sub", 8, b"\x00\x02\x00" + num(0) + opt(None) + opt(None))  # SUBSCRIBE_OK
    s.open_uni("group")
    s.msg("group", 1, b"\x00")  # DataStream::Group
    s.msg("group", 12, num(0) + num(0) + num(0))  # subscription 0, group 0
    s.msg("group", 13, b"\x04\x00abcd")  # a 4-byte frame
    s.msg("group", 13, b"\x02\x01xy")
    s.finish("group")
    s.sleep(100)
    if v >= 2:
        s.msg("interest", 5, b"\x01" + path("live/cam") + hops([]))  # ended
    s.sleep(1000)
    return bytes(s.out)


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "session")
    os.makedirs(out, exist_ok=True)
    for v, name in enumerate(VERSIONS):
        for role, make in (("subscriber", subscriber), ("publisher", publisher)):
            with open(os.path.join(out, f"{name}-{role}"), "wb") as f:
                f.write(make(v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
