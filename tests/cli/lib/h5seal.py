"""Re-seals bitroll files that a test edited with h5py: rewrites the 512-byte integrity header (docs/FORMAT.md,
"Integrity header") for the bytes the file now holds, so the reader's checks behind the header are reached.
usage: h5seal.py FILE...   (xxh3 from the libxxhash that bitroll links, through ctypes)"""
import ctypes
import ctypes.util
import struct
import sys


class XXH128(ctypes.Structure):
    _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]


lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
lib.XXH3_128bits.restype = XXH128
lib.XXH3_128bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
lib.XXH3_64bits.restype = ctypes.c_uint64
lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def seal(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"BITROLL\0" or data[512:520] != b"\x89HDF\r\n\x1a\n":
        sys.exit(f"h5seal: {path}: not a version 2 bitroll file")
    body = data[512:]
    d = lib.XXH3_128bits(body, len(body))
    head = b"BITROLL\0" + struct.pack("<IIQQQ", 1, 512, len(data), d.low64, d.high64) + b"xxh3-128".ljust(16, b"\0")
    head = head.ljust(512, b"\0")  # the header checksum (bytes 56..63) is computed with itself zeroed
    head = head[:56] + struct.pack("<Q", lib.XXH3_64bits(head, 512)) + head[64:]
    with open(path, "r+b") as f:
        f.write(head)


for p in sys.argv[1:]:
    seal(p)
