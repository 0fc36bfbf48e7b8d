"""Helpers for the server tests: a micro random model, server processes, direct sampler calls,
a TCP proxy that holds connections (a model download that blocks until the test lets it go)."""
from __future__ import annotations

import socket
import threading
from pathlib import Path

from diffucoder.serving.smoke import ServerProcess, random_model_dir, server_command

MICRO = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
             num_hidden_layers=2)
# Small caps so that over-limit requests are cheap to build; tiny decodes so that 1000 requests are quick.
TEST_OVERRIDES = ("access_log=false", "torch_threads=1", "defaults.max_tokens=4", "limits.max_tokens=32",
                  "limits.steps=32", "limits.prompt_tokens=160", "limits.prompts_per_request=8",
                  "limits.body_bytes=65536", "batching.max_wait_ms=30", "batching.queue_size=4096")


def micro_model_dir(path: Path) -> Path:
    return random_model_dir(path, **MICRO)


def start_server(model_dir: Path, log_dir: Path, *overrides: str, name: str = "server") -> ServerProcess:
    server = ServerProcess(server_command(model_dir, overrides=TEST_OVERRIDES + overrides), log_dir / f"{name}.log")
    server.start(timeout_s=120)
    return server


def direct_texts(model, tokenizer, prompts: list[str], **sampling) -> list[str]:
    """What the project's sampler gives for ``prompts`` decoded as ONE left-padded batch (greedy)."""
    from diffucoder.sampling import decode_completions, diffusion_generate, encode_prompts
    ids, mask = encode_prompts(tokenizer, prompts)
    settings = dict(temperature=0.0, top_p=0.95, top_k=0, alg="entropy", alg_temp=0.0) | sampling
    return decode_completions(tokenizer, diffusion_generate(model, ids, mask, **settings), stop="eos")


class GatedProxy:
    """A TCP proxy on 127.0.0.1 that holds every connection until ``open()``: point the server's
    S3 endpoint at it and the model's download (the real ``s3://`` code path) blocks until then.

        with GatedProxy(upstream_port) as gate:   # gate.port: where clients connect
            ...                                  # gate.held: connections waiting so far
            gate.open()
    """

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.gate = threading.Event()
        self.held = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "GatedProxy":
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc) -> None:
        self._closed = True
        self.gate.set()
        self._listener.close()

    def open(self) -> None:
        self.gate.set()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.held += 1
            self._spawn(self._relay, client)

    def _relay(self, client: socket.socket) -> None:
        self.gate.wait()
        with client, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            self._spawn(self._pipe, upstream, client)
            self._pipe(client, upstream)

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass
