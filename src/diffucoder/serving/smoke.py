"""Start ``diffucoder serve`` as a real subprocess, ask it once, stop it — the demo's last step.

    from diffucoder.serving.smoke import serve_and_ask, random_model_dir
    text = serve_and_ask("runs/demo/model", "def add(a, b):", max_tokens=32)
    text = serve_and_ask("file:///abs/store/runs/r1/rl", "Write a function ...", chat=True)
    model_dir = random_model_dir("/tmp/tiny-random")   # random weights + a small BPE, for tests/benchmarks

``serve_and_ask`` binds 127.0.0.1 (``port=0``: the server picks a free port and prints
it; it binds before the model loads), waits for ``/v2/health/ready``, sends one OpenAI-style completion with the ``openai``
client, and stops the server with SIGTERM (its draining shutdown), waiting for it to exit.
The server's output goes to a log file whose tail is in any error.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from diffucoder.errors import DiffucoderError

LISTENING = re.compile(r"diffucoder serve: listening on (http://\S+)")
CORPUS = ("def add(a, b):\n    return a + b\n", "import os\nprint(os.getcwd())\n",
          "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
          "for i in range(10):\n    print(i * i)\n", "while True:\n    break\n",
          "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
          "Write a function that returns the sum of a list.\n", "x = [i * i for i in range(5)]\n")


def server_command(model_dir: str | os.PathLike, *, port: int = 0, config: str | None = None,
                   overrides: tuple[str, ...] = ()) -> list[str]:
    command = [sys.executable, "-m", "diffucoder.cli", "serve", "--model", str(model_dir),
               "--host", "127.0.0.1", "--port", str(port)]
    return command + (["--config", str(config)] if config else []) + list(overrides)


class ServerProcess:
    """A ``diffucoder serve`` subprocess: ``start()`` returns once it is ready; ``stop()`` drains it."""

    def __init__(self, command: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.command, self.log_path, self.env = command, Path(log_path), env
        self.process: subprocess.Popen | None = None
        self.url = ""

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self, timeout_s: float = 120.0, wait_ready: bool = True) -> str:
        """Spawn and wait until ``/v2/health/ready`` answers 200 (``wait_ready=False``: until the
        port is bound; the model may still be loading); the base URL."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DiffucoderError(f"diffucoder serve exited with {self.process.returncode} before it was "
                                      f"{'ready' if wait_ready else 'listening'}:\n{self.log_tail()}")
            if not self.url:
                found = LISTENING.search(self.log_path.read_text(errors="replace"))
                self.url = found.group(1) if found else ""
            if self.url and (not wait_ready or _ready(self.url)):
                return self.url
            time.sleep(0.1)
        self.stop(timeout_s=5.0)
        raise DiffucoderError(f"diffucoder serve was not {'ready' if wait_ready else 'listening'} within "
                              f"{timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait (SIGKILL after ``timeout_s``); the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> "ServerProcess":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_and_ask(model_dir: str | os.PathLike, prompt: str, *, port: int = 0, timeout_s: float = 180.0,
                  max_tokens: int | None = None, config: str | None = None,
                  overrides: tuple[str, ...] = (), chat: bool = False) -> str:
    """Serve ``model_dir`` on 127.0.0.1, complete ``prompt`` once over the OpenAI route, stop; the text.

    ``chat``: send ``prompt`` as the user message of ``/openai/v1/chat/completions`` (an instruct
    model's route); otherwise as a raw ``/openai/v1/completions`` prompt.
    """
    from openai import OpenAI, OpenAIError

    path = Path(model_dir)
    if "://" not in str(model_dir) and not (path / "config.json").is_file():
        raise DiffucoderError(f"serve_and_ask: {model_dir} is not a model directory (no config.json)")
    with tempfile.TemporaryDirectory(prefix="diffucoder-smoke-") as workdir:
        server = ServerProcess(server_command(model_dir, port=port, config=config, overrides=overrides),
                               Path(workdir) / "server.log")
        try:
            url = server.start(timeout_s=timeout_s)
            client = OpenAI(base_url=f"{url}/openai/v1", api_key="not-needed", timeout=timeout_s, max_retries=0)
            name = client.models.list().data[0].id
            extra = {"max_tokens": max_tokens} if max_tokens is not None else {}
            if chat:
                reply = client.chat.completions.create(model=name, messages=[{"role": "user", "content": prompt}],
                                                       **extra)
                return reply.choices[0].message.content or ""
            return client.completions.create(model=name, prompt=prompt, **extra).choices[0].text
        except OpenAIError as err:
            raise DiffucoderError(f"serve_and_ask: the request failed: {err}\n{server.log_tail()}") from err
        finally:
            code = server.stop()
            if code not in (0, None):
                print(f"serve_and_ask: the server exited with {code}:\n{server.log_tail()}", file=sys.stderr)


def random_model_dir(path: str | os.PathLike, *, preset: str = "tiny", vocab_size: int = 512, seed: int = 0,
                     texts: list[str] | None = None, **shape) -> Path:
    """A model directory with random weights and a BPE trained on ``texts`` (default: a few lines of
    code), ready to be trained (``model.init_from``) or served. No downloads."""
    from diffucoder.data.tokenizer import save_tokenizer, train_bpe
    from diffucoder.model import build_config, build_model, save_model

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="diffucoder-tok-") as scratch:
        tokenizer = train_bpe(list(texts) if texts else list(CORPUS) * 4, vocab_size=vocab_size, min_frequency=1)
        ids = save_tokenizer(tokenizer, Path(scratch))
        config = build_config(preset, vocab_size=len(tokenizer), mask_token_id=ids["mask"],
                              dlm_pad_token_id=ids["dlm_pad"], pad_token_id=ids["pad"], bos_token_id=ids["eos"],
                              eos_token_id=ids["eos"], **shape)
        save_model(build_model(config, seed=seed).eval(), path)
        tokenizer.save_pretrained(str(path))
    return path


def _ready(url: str) -> bool:
    """Whether the server answers its readiness route (a refused or slow connection: not yet)."""
    import httpx
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False
