"""The candidate process: runs the untrusted program, then answers calls from the test runner.

    serve(fd=3, program="def f(x): return x + 1")   # sends ("ready", ["f"]), then loops

Nothing in this process is trusted once the program starts: it can rewrite this module,
patch builtins, or write arbitrary bytes to ``fd``. That is by design. The runner (another
process, another uid) decodes every reply with the strict codec, so the most a hostile
program can achieve here is to *return* values, which is what it was asked to do.

Protocol on ``fd`` (frames of ``wire.encode``d tuples):
    -> ("ready", [callable top-level names]) | ("load_error", type_name, message)
    <- ("call", name, args_list, kwargs_dict)
    -> ("ok", value) | ("raise", type_name, message)
"""
import builtins
import io
import sys
import traceback

from . import wire

REQUEST_LIMIT = 256 << 20
MESSAGE_CHARS = 2000


def describe(err: BaseException) -> str:
    """``message (line N)`` for the innermost frame of the program, bounded in size."""
    try:
        text = str(err)[:MESSAGE_CHARS]
        frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == "<program>"]
        line = getattr(err, "lineno", None) if isinstance(err, SyntaxError) else None
        if frames:
            line = frames[-1].lineno
        return f"{text} (program line {line})" if line else text
    except BaseException:  # a hostile __str__ may raise anything
        return "<unprintable exception>"


def _reply(fd: int, message: tuple) -> None:
    try:
        payload = wire.encode(message)
    except (wire.WireError, RecursionError) as err:
        payload = wire.encode(("raise", "TypeError", f"return value is not plain data: {err}"))
    wire.send_frame(fd, payload)


def _unbuffered_stdio() -> None:
    """Output goes straight to the capture pipes, so it survives the process being killed."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        raw = io.FileIO(fd, "w", closefd=False)
        setattr(sys, name, io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace",
                                            write_through=True))
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")


def serve(fd: int, program: str) -> None:
    _unbuffered_stdio()
    # loaded like an imported module, so an ``if __name__ == "__main__":`` demo does not run
    namespace = {"__name__": "solution", "__builtins__": builtins}
    try:
        code = compile(program, "<program>", "exec")
        exec(code, namespace)
    except BaseException as err:  # SystemExit and MemoryError included: all are load errors
        _reply(fd, ("load_error", type(err).__name__, describe(err)))
        return
    names = [n for n, v in namespace.items()
             if type(n) is str and not n.startswith("__") and callable(v)]
    _reply(fd, ("ready", names))
    requests = wire.FrameReader(fd)
    while True:
        request = requests.frame(REQUEST_LIMIT)
        if request is None:
            return
        _kind, name, args, kwargs = wire.decode(request)
        try:
            function = namespace[name]
            _reply(fd, ("ok", function(*args, **kwargs)))
        except BaseException as err:
            _reply(fd, ("raise", type(err).__name__, describe(err)))
