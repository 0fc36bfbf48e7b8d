"""Strict plain-data codec and framing, shared by the trusted parent and the sandbox.

    blob = encode([1, (2.0, "x"), {b"k": None}])    # only exact built-in types
    value = decode(blob)                             # never builds anything else
    strict_equal(1, 1.0), strict_equal(True, 1)      # (True, False)

Only these exact types cross a process boundary: None, bool, int, float, complex, str,
bytes, list, tuple, dict, set, frozenset (nested up to MAX_DEPTH). Subclasses are
refused (``type(v) is int``, not ``isinstance``), so an object with a rigged ``__eq__``,
``__hash__`` or ``__bool__`` can never reach the side that decides a verdict.

This module runs inside the sandbox under the system interpreter: standard library only.
"""
import os
import struct

MAX_DEPTH = 200
_LEN = HEADER = struct.Struct(">I")  # frame length prefix
_F64 = struct.Struct(">d")
_C128 = struct.Struct(">dd")
_CONTAINERS = {list: b"l", tuple: b"t", set: b"S", frozenset: b"z"}
_BUILDERS = {b"l": list, b"t": tuple, b"S": set, b"z": frozenset}
NUMBERS = (int, float)


class WireError(ValueError):
    """A value is not plain data, or bytes do not decode to plain data."""


def encode(value) -> bytes:
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def _int_bytes(v: int) -> bytes:
    raw = v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True)
    return b"i" + _LEN.pack(len(raw)) + raw


# The encoder runs for every value a test compares, on both sides of the sandbox: the common
# types are tested first, a tag and its length are packed at once, and small ints are looked up.
_TAGGED = struct.Struct(">cI")
_TAGGED_F64 = struct.Struct(">cd")
_TAGGED_C128 = struct.Struct(">cdd")
_SMALL_INTS = {v: _int_bytes(v) for v in range(-256, 257)}


def _encode(v, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels (or contains itself)")
    t = type(v)
    if t is int:
        small = _SMALL_INTS.get(v)
        out += small if small is not None else _int_bytes(v)
    elif t is str:
        raw = v.encode("utf-8", "surrogatepass")
        out += _TAGGED.pack(b"s", len(raw))
        out += raw
    elif t is list or t is tuple:
        out += _TAGGED.pack(b"l" if t is list else b"t", len(v))
        for item in v:
            _encode(item, out, depth + 1)
    elif v is None:
        out += b"N"
    elif t is bool:
        out += b"T" if v else b"F"
    elif t is float:
        out += _TAGGED_F64.pack(b"f", v)
    elif t is dict:
        out += _TAGGED.pack(b"d", len(v))
        for key, item in v.items():
            _encode(key, out, depth + 1)
            _encode(item, out, depth + 1)
    elif t is bytes:
        out += _TAGGED.pack(b"b", len(v))
        out += v
    elif t is complex:
        out += _TAGGED_C128.pack(b"c", v.real, v.imag)
    elif t is set or t is frozenset:
        out += _TAGGED.pack(_CONTAINERS[t], len(v))
        for item in v:
            _encode(item, out, depth + 1)
    else:
        raise WireError(f"{t.__module__}.{t.__qualname__} is not plain data")


def decode(data) -> object:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    value, end = _decode(view, 0, 0, len(view))
    if end != len(view):
        raise WireError(f"{len(view) - end} trailing bytes after the value")
    return value


# Tags as the byte values a memoryview yields: the decoder runs for every record, request and
# reply on both sides of the sandbox, so it compares small ints instead of slicing out bytes.
_N, _T, _FALSE, _FLOAT, _COMPLEX, _INT, _STR, _BYTES, _DICT = b"NTFfcisbd"
_BUILDER_OF = {tag[0]: builder for tag, builder in _BUILDERS.items()}


def _decode(view: memoryview, pos: int, depth: int, size: int):
    if depth > MAX_DEPTH:
        raise WireError(f"data nested deeper than {MAX_DEPTH} levels")
    if pos >= size:
        raise WireError("truncated data")
    tag = view[pos]
    pos += 1
    if tag == _N:
        return None, pos
    if tag == _T:
        return True, pos
    if tag == _FALSE:
        return False, pos
    if tag == _FLOAT:
        if pos + 8 > size:
            raise WireError("truncated data")
        return _F64.unpack_from(view, pos)[0], pos + 8
    if tag == _COMPLEX:
        if pos + 16 > size:
            raise WireError("truncated data")
        real, imag = _C128.unpack_from(view, pos)
        return complex(real, imag), pos + 16
    if pos + 4 > size:
        raise WireError("truncated data")
    (n,) = _LEN.unpack_from(view, pos)
    pos += 4
    end = pos + n
    if end > size:  # a payload's length, or an item count (every item takes at least one byte)
        raise WireError("truncated data")
    if tag == _STR:
        try:
            return str(view[pos:end], "utf-8", "surrogatepass"), end
        except UnicodeDecodeError as err:
            raise WireError(f"bad string: {err}") from None
    if tag == _INT:
        return int.from_bytes(view[pos:end], "big", signed=True), end
    if tag == _BYTES:
        return bytes(view[pos:end]), end
    builder = _BUILDER_OF.get(tag)
    if builder is not None:
        items = []
        for _ in range(n):
            item, pos = _decode(view, pos, depth + 1, size)
            items.append(item)
        if builder is list:
            return items, pos
        try:
            return builder(items), pos
        except TypeError as err:  # an unhashable item in a set
            raise WireError(f"bad set: {err}") from None
    if tag == _DICT:
        out = {}
        for _ in range(n):
            key, pos = _decode(view, pos, depth + 1, size)
            item, pos = _decode(view, pos, depth + 1, size)
            try:
                out[key] = item
            except TypeError as err:
                raise WireError(f"bad dict key: {err}") from None
        return out, pos
    raise WireError(f"unknown tag {bytes([tag])!r}")


def strict_equal(a, b) -> bool:
    """Equality on plain data where types must match exactly; int and float compare by value.

    ``True`` is not ``1``, ``(1,)`` is not ``[1]``, ``"1"`` is not ``1``. Both sides must
    already be plain data (decoded by ``decode``), so ``==`` below only ever runs the
    built-in comparisons.
    """
    ta, tb = type(a), type(b)
    if ta is not tb:
        return ta in NUMBERS and tb in NUMBERS and a == b
    if ta is list or ta is tuple:
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    if ta is dict:
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    return a == b


def is_plain(value) -> bool:
    try:
        _encode(value, bytearray(), 0)
    except (WireError, RecursionError):
        return False
    return True


# --- framing: 4-byte big-endian length, then the payload --------------------------------

SMALL_WRITE = 1 << 14   # frames up to this size are joined into one write
READ_AHEAD = 1 << 16    # what a FrameReader asks for at once

def send_frame(fd: int, payload) -> None:
    send_frames(fd, [payload])


def send_frames(fd: int, payloads) -> None:
    """Several frames in one ``writev`` where possible: the reader wakes up once. Small ``bytes``
    frames (a call, a reply, a step's records) go out joined, in one plain ``write``; anything
    else is never copied: the zygote hands on job data from buffers it wipes or that no fork
    inherits, and a copy would outlive them in its heap."""
    parts = []
    for payload in payloads:
        parts += [_LEN.pack(len(payload)), payload]
    if all(type(p) is bytes for p in payloads) and sum(map(len, parts)) <= SMALL_WRITE:
        write_all(fd, b"".join(parts))
    else:
        write_all(fd, *parts)


def write_all(fd: int, *parts) -> None:
    if len(parts) == 1 and type(parts[0]) is bytes:  # the common case: one write, all taken
        written = os.write(fd, parts[0])
        if written == len(parts[0]):
            return
        parts = (memoryview(parts[0])[written:],)
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        n = os.writev(fd, views[:512])
        while n:
            if n >= len(views[0]):
                n -= len(views.pop(0))
            else:
                views[0], n = views[0][n:], 0


def recv_frame(fd: int, limit: int):
    """The next frame's payload, or None on a clean end of stream."""
    head = read_exact(fd, 4, eof_ok=True)
    if head is None:
        return None
    (n,) = _LEN.unpack(head)
    if n > limit:
        raise WireError(f"frame of {n} bytes exceeds the limit of {limit}")
    return read_exact(fd, n)


class FrameReader:
    """Frames from a stream that nothing else reads, read ahead: a small frame costs one
    ``read``, not two (the runner and the candidate exchange one per call and per reply).

        link = FrameReader(fd)
        payload = link.frame(limit)      # as recv_frame: None on a clean end of stream
    """

    def __init__(self, fd: int):
        self.fd = fd
        self._buf = bytearray()

    def frame(self, limit: int):
        buf = self._buf
        if not self._fill(4):
            if buf:
                raise EOFError(f"stream ended after {len(buf)} of 4 bytes")
            return None
        (n,) = _LEN.unpack_from(buf)
        if n > limit:
            raise WireError(f"frame of {n} bytes exceeds the limit of {limit}")
        if not self._fill(4 + n):
            raise EOFError(f"stream ended after {len(buf) - 4} of {n} bytes")
        with memoryview(buf) as view:
            payload = bytes(view[4:4 + n])
        del buf[:4 + n]
        return payload

    def _fill(self, size: int) -> bool:
        """At least ``size`` bytes buffered; False if the stream ends first."""
        buf = self._buf
        while len(buf) < size:
            chunk = os.read(self.fd, max(size - len(buf), READ_AHEAD))
            if not chunk:
                return False
            buf += chunk
        return True


def read_exact(fd: int, n: int, eof_ok: bool = False):
    buf = bytearray(n)
    if not read_into(fd, buf, eof_ok):
        return None
    return bytes(buf)


def read_into(fd: int, buf: bytearray, eof_ok: bool = False) -> bool:
    """Fill ``buf`` from ``fd``. False on EOF before the first byte when ``eof_ok``."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            if eof_ok and got == 0:
                return False
            raise EOFError(f"stream ended after {got} of {len(buf)} bytes")
        got += n
    return True


def wipe(buf: bytearray) -> None:
    """Overwrite a buffer so later forks of this process cannot find its old contents."""
    buf[:] = bytes(len(buf))
