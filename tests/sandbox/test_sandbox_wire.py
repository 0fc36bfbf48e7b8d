"""The strict codec: only exact built-in types cross; equality is type-exact."""
import math

import pytest

from diffucoder.sandbox.inside import wire

PLAIN = [None, True, False, 0, -1, 2 ** 200, -(3 ** 90), 1.5, -0.0, math.inf, 1 + 2j, "",
         "héllo \U0001f600 \ud800", b"\x00\xff", [], (), {}, set(), frozenset({1, "a"}),
         [1, (2.0, "x"), {b"k": None, 3: [True]}], {(1, 2): {"nested": [set([1.5])]}}]


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_values_round_trip_with_their_exact_types(value):
    back = wire.decode(wire.encode(value))
    assert wire.strict_equal(back, value) and type(back) is type(value)
    assert repr(back) == repr(value)


class AlwaysEqual:
    def __eq__(self, other):
        return True


class Int(int):
    def __eq__(self, other):
        return True


class Str(str):
    pass


@pytest.mark.parametrize("value", [AlwaysEqual(), Int(3), Str("a"), [1, Int(2)],
                                   {"k": AlwaysEqual()}, object(), len, iter([1]),
                                   bytearray(b"x"), range(3)], ids=repr)
def test_anything_but_exact_builtin_types_is_refused(value):
    with pytest.raises(wire.WireError, match="not plain data"):
        wire.encode(value)
    assert not wire.is_plain(value)


def test_self_containing_and_too_deep_values_are_refused():
    loop = []
    loop.append(loop)
    with pytest.raises(wire.WireError, match="deeper"):
        wire.encode(loop)
    deep = []
    for _ in range(wire.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(wire.WireError):
        wire.encode(deep)


@pytest.mark.parametrize("blob", [b"", b"?", b"i\x00\x00\x00\x05\x01", b"l\xff\xff\xff\xff",
                                  b"NN", b"S\x00\x00\x00\x01l\x00\x00\x00\x00",
                                  b"s\x00\x00\x00\x01\xff", b"d\x00\x00\x00\x01l\x00\x00\x00\x00N"])
def test_malformed_bytes_raise_wire_error(blob):
    with pytest.raises(wire.WireError):
        wire.decode(blob)


@pytest.mark.parametrize("a,b,equal", [
    (1, 1.0, True), (0.5, 0.5, True), (True, 1, False), (False, 0, False), (1, "1", False),
    ((1, 2), [1, 2], False), ([1, (2,)], [1, (2,)], True), ({"a": 1}, {"a": 1.0}, True),
    ({"a": True}, {"a": 1}, False), ({"a": 1}, {"b": 1}, False), ([1, 2], [1, 2, 3], False),
    (None, 0, False), (b"a", "a", False), ({1, 2}, {2, 1}, True),
    (float("nan"), float("nan"), False),
])
def test_strict_equal_is_type_exact(a, b, equal):
    assert wire.strict_equal(a, b) is equal
    assert wire.strict_equal(b, a) is equal


def test_frames_survive_a_pipe(tmp_path):
    import os
    r, w = os.pipe()
    wire.send_frames(w, [b"one", wire.encode([1, 2]), b""])
    os.close(w)
    assert wire.recv_frame(r, 100) == b"one"
    assert wire.decode(wire.recv_frame(r, 100)) == [1, 2]
    assert wire.recv_frame(r, 100) == b""
    assert wire.recv_frame(r, 100) is None
    os.close(r)


def test_oversized_frames_are_refused():
    import os
    r, w = os.pipe()
    wire.send_frame(w, b"x" * 64)
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.recv_frame(r, 10)
    os.close(r)
    os.close(w)


@pytest.mark.parametrize("value,blob", [
    (0, b"i\x00\x00\x00\x01\x00"), (127, b"i\x00\x00\x00\x01\x7f"), (-1, b"i\x00\x00\x00\x01\xff"),
    (128, b"i\x00\x00\x00\x02\x00\x80"), (-128, b"i\x00\x00\x00\x02\xff\x80"),
    (255, b"i\x00\x00\x00\x02\x00\xff"), (256, b"i\x00\x00\x00\x02\x01\x00"),
    (-257, b"i\x00\x00\x00\x02\xfe\xff"), (2 ** 16, b"i\x00\x00\x00\x03\x01\x00\x00"),
    ("é", b"s\x00\x00\x00\x02\xc3\xa9"), ([1.0], b"l\x00\x00\x00\x01f?\xf0\x00\x00\x00\x00\x00\x00"),
    ((None, True), b"t\x00\x00\x00\x02NT"), ({b"k": False}, b"d\x00\x00\x00\x01b\x00\x00\x00\x01kF"),
    (frozenset({2j}), b"z\x00\x00\x00\x01c" + bytes(8) + b"@\x00\x00\x00\x00\x00\x00\x00"),
])
def test_the_byte_format_is_fixed(value, blob):
    # both sides of the sandbox (the system interpreter inside, this one outside) must agree
    assert wire.encode(value) == blob
    back = wire.decode(blob)
    assert repr(back) == repr(value) and type(back) is type(value)


def test_decode_reads_any_bytes_like_input():
    blob = wire.encode([1, "two", (3.0,)])
    assert wire.decode(bytearray(blob)) == wire.decode(memoryview(blob)) == [1, "two", (3.0,)]
    assert wire.decode(memoryview(b"xx" + blob)[2:]) == [1, "two", (3.0,)]


def test_a_frame_reader_reads_frames_however_the_bytes_arrive():
    import os
    import threading
    frames = [b"", b"x", wire.encode(list(range(1000))), b"y" * 200_000, b"z"]
    stream = b"".join(wire.HEADER.pack(len(f)) + f for f in frames)
    r, w = os.pipe()

    def trickle():   # odd-sized pieces, so frames and length prefixes straddle reads
        for start in range(0, len(stream), 7777):
            os.write(w, stream[start:start + 7777])
        os.close(w)
    writer = threading.Thread(target=trickle)
    writer.start()
    reader = wire.FrameReader(r)
    assert [reader.frame(1 << 20) for _ in frames] == frames
    assert reader.frame(1 << 20) is None
    writer.join()
    os.close(r)


@pytest.mark.parametrize("stream,error", [
    (b"\x00\x00", EOFError), (b"\x00\x00\x00\x05abc", EOFError),
    (b"\x00\x00\x01\x00" + b"a" * 256, wire.WireError),   # larger than the limit of 100
])
def test_a_frame_reader_refuses_cut_and_oversized_frames(stream, error):
    import os
    r, w = os.pipe()
    os.write(w, stream)
    os.close(w)
    with pytest.raises(error):
        wire.FrameReader(r).frame(100)
    os.close(r)
