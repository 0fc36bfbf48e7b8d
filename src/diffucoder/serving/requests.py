"""Requests of every route, checked and turned into ``GenerationRequest`` rows for the batcher.

    parser = RequestParser(cfg, engine)                    # cfg: ServeConfig, engine: Engine
    parsed = parser.completion(body)                       # /openai/v1/completions
    parsed = parser.chat(body)                             # /openai/v1/chat/completions
    parsed = parser.instances(instances, parameters)       # KServe v1 / v2
    parsed.requests[0].sampling                            # a checked SamplingConfig

Each diffusion field (``max_tokens``, ``steps``, ``alg``, ``alg_temp``, ``temperature``, ``threshold``,
``max_per_step``, ``top_p``, ``top_k``, ``seed``, ``stop``) falls back to ``cfg.defaults`` and may not exceed
``cfg.limits``. ``steps`` defaults to ``max_tokens`` when ``defaults.steps`` is 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffucoder.config import ConfigError
from diffucoder.sampling.config import ALGORITHMS, SamplingConfig, resolve_config
from diffucoder.serving.config import ServeConfig
from diffucoder.serving.errors import RequestError
from diffucoder.serving.fields import (MISSING, bad, read_bool, read_choice, read_float, read_int, read_stop,
                                       reject_unsupported)
from diffucoder.training.chat import IM_END, ROLES, render_prompt

SEED_LIMIT = 2**63 - 1
# OpenAI fields this server does not implement: accepted only at their neutral values.
UNSUPPORTED_COMPLETION = {"n": (1,), "best_of": (1, None), "logprobs": (None, 0, False), "suffix": (None, ""),
                          "presence_penalty": (0, 0.0, None), "frequency_penalty": (0, 0.0, None),
                          "logit_bias": (None, {})}
UNSUPPORTED_CHAT = {**{k: v for k, v in UNSUPPORTED_COMPLETION.items() if k not in ("best_of", "suffix")},
                    "top_logprobs": (None, 0), "tools": (None, []), "functions": (None, []),
                    "response_format": (None, {"type": "text"})}


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt row to decode: its token ids, sampler settings and stop strings."""
    prompt_ids: tuple[int, ...]
    sampling: SamplingConfig
    stop_strings: tuple[str, ...] = ()
    seeded: bool = False

    @property
    def random(self) -> bool:
        """Whether the decode draws random numbers (``SamplingConfig.random``)."""
        return self.sampling.random

    @property
    def batch_key(self) -> tuple:
        """Rows with equal keys may share a padded batch: same length, schedule and sampler.

        A seeded random request decodes alone, so its seed reproduces its output whatever
        else is queued; an unseeded one shares a batch drawn from a fresh seed.
        """
        s = self.sampling
        key = (s.max_new_tokens, s.steps, s.alg, s.temperature, s.top_p, s.top_k, s.alg_temp, s.mode,
               s.block_size, s.eps, s.batch_invariant, s.threshold, s.max_per_step)
        return key + ((id(self),) if self.random and self.seeded else ())


@dataclass
class ParsedRequest:
    requests: list[GenerationRequest]
    prompts: list[str]
    stream: bool = False
    include_usage: bool = False
    echo: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class RequestParser:
    def __init__(self, cfg: ServeConfig, engine):
        self.cfg, self.engine = cfg, engine

    # -- routes --------------------------------------------------------------------------

    def completion(self, body: dict) -> ParsedRequest:
        self.check_model(body)
        reject_unsupported(body, UNSUPPORTED_COMPLETION)
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = prompt
        elif isinstance(prompt, list) and prompt and all(isinstance(p, (int, list)) for p in prompt):
            raise bad("", "prompt", "token-id prompts are not supported; send text")
        else:
            raise bad("", "prompt", "required: a string or a non-empty list of strings", body.get("prompt", MISSING))
        if len(prompts) > self.cfg.limits.prompts_per_request:
            raise bad("", "prompt", f"at most {self.cfg.limits.prompts_per_request} prompts per request")
        sampling, seeded, stops = self.sampling(body)
        requests = [self.row(text, f"prompt[{i}]" if len(prompts) > 1 else "prompt", sampling, seeded, stops)
                    for i, text in enumerate(prompts)]
        stream, include_usage = self.stream_options(body)
        return ParsedRequest(requests, prompts, stream, include_usage, echo=read_bool(body, "echo", default=False))

    def chat(self, body: dict) -> ParsedRequest:
        self.check_model(body)
        reject_unsupported(body, UNSUPPORTED_CHAT)
        prompt = render_prompt(self.messages(body.get("messages", MISSING)), template=self.cfg.chat.template)
        if body.get("max_tokens") is None and body.get("max_completion_tokens") is not None:
            # OpenAI's newer name for max_tokens; errors still name what the client sent
            read_int(body, "max_completion_tokens", lo=1, hi=self.cfg.limits.max_tokens, default=None)
            body = {**body, "max_tokens": body["max_completion_tokens"]}
        sampling, seeded, stops = self.sampling(body)
        # The chat template ends an answer with <|im_end|>: cut there too.
        request = self.row(prompt, "messages", sampling, seeded, stops + (IM_END,))
        stream, include_usage = self.stream_options(body)
        return ParsedRequest([request], [prompt], stream, include_usage)

    def instances(self, instances: Any, parameters: Any, where: str = "instances",
                  params_where: str = "parameters") -> ParsedRequest:
        """KServe v1 ``instances`` (strings, or objects with ``prompt`` or ``messages`` and their own
        fields) with shared ``parameters``; v2 passes its ``text_input`` strings the same way."""
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict):
            raise bad("", params_where, "must be an object of generation fields", parameters)
        if not isinstance(instances, list) or not instances:
            raise bad("", where, "required: a non-empty list of prompts",
                      instances if instances is not None else MISSING)
        if len(instances) > self.cfg.limits.prompts_per_request:
            raise bad("", where, f"at most {self.cfg.limits.prompts_per_request} prompts per request")
        self.sampling(parameters, params_where)  # a bad shared field is named as such
        rows, prompts = [], []
        for i, instance in enumerate(instances):
            at = f"{where}[{i}]"
            fields = dict(parameters)
            if isinstance(instance, str):
                text, param, extra_stop = instance, at, ()
            elif isinstance(instance, dict):
                fields.update({k: v for k, v in instance.items() if k not in ("prompt", "messages")})
                if "messages" in instance:
                    text = render_prompt(self.messages(instance["messages"], at), template=self.cfg.chat.template)
                    param, extra_stop = f"{at}.messages", (IM_END,)
                elif isinstance(instance.get("prompt"), str):
                    text, param, extra_stop = instance["prompt"], f"{at}.prompt", ()
                else:
                    raise bad(at, "prompt", "required: a string (or give 'messages')",
                              instance.get("prompt", MISSING))
            else:
                raise bad("", at, "must be a prompt string or an object with 'prompt' or 'messages'", instance)
            sampling, seeded, stops = self.sampling(fields, at if isinstance(instance, dict) else params_where)
            rows.append(self.row(text, param, sampling, seeded, stops + extra_stop))
            prompts.append(text)
        return ParsedRequest(rows, prompts)

    # -- pieces --------------------------------------------------------------------------

    def check_model(self, body: dict) -> None:
        model = body.get("model")
        if model is None:
            return
        if not isinstance(model, str):
            raise bad("", "model", "must be a string", model)
        if model != self.cfg.model_name:
            raise RequestError(f"'model': this server serves {self.cfg.model_name!r}, not {model[:60]!r}",
                               param="model", status=404, code="model_not_found")

    def stream_options(self, body: dict) -> tuple[bool, bool]:
        stream = read_bool(body, "stream", default=False)
        options = body.get("stream_options")
        if options is None:
            return stream, False
        if not isinstance(options, dict):
            raise bad("", "stream_options", "must be an object like {\"include_usage\": true}", options)
        return stream, read_bool(options, "include_usage", default=False, where="stream_options")

    def messages(self, messages: Any, where: str = "") -> list[dict[str, str]]:
        if not isinstance(messages, list) or not messages:
            raise bad(where, "messages", "required: a non-empty list of {role, content} objects", messages)
        out = []
        for i, message in enumerate(messages):
            at = f"{where + '.' if where else ''}messages[{i}]"
            if not isinstance(message, dict):
                raise bad("", at, "must be an object with 'role' and 'content'", message)
            role = read_choice(message, "role", choices=ROLES, default=None, where=at)
            if role is None:
                raise bad(at, "role", f"required: one of {list(ROLES)}")
            out.append({"role": role, "content": self.content(message.get("content"), f"{at}.content")})
        return out

    @staticmethod
    def content(content: Any, at: str) -> str:
        """A message's text: a string, or OpenAI's list of ``{"type": "text", "text": ...}`` parts."""
        if isinstance(content, str):
            return content
        if isinstance(content, list) and all(isinstance(part, dict) and part.get("type") == "text"
                                             and isinstance(part.get("text"), str) for part in content):
            return "".join(part["text"] for part in content)
        raise bad("", at, "must be a string or a list of {\"type\": \"text\", \"text\": str} parts",
                  content if content is not None else MISSING)

    def sampling(self, body: dict, where: str = "") -> tuple[SamplingConfig, bool, tuple[str, ...]]:
        """(checked sampler settings, whether a seed was given, stop strings) from a request's fields."""
        d, lim, sampler = self.cfg.defaults, self.cfg.limits, self.cfg.sampler
        max_tokens = read_int(body, "max_tokens", lo=1, hi=lim.max_tokens, default=d.max_tokens, where=where)
        steps = read_int(body, "steps", lo=1, hi=lim.steps, default=d.steps or min(max_tokens, lim.steps),
                         where=where)
        seed = read_int(body, "seed", lo=0, hi=SEED_LIMIT, default=None, where=where)
        values = dict(
            max_new_tokens=max_tokens, steps=steps,
            alg=read_choice(body, "alg", choices=ALGORITHMS, default=d.alg, where=where),
            alg_temp=read_float(body, "alg_temp", lo=0.0, hi=lim.temperature, default=d.alg_temp, where=where),
            temperature=read_float(body, "temperature", lo=0.0, hi=lim.temperature, default=d.temperature,
                                   where=where),
            top_p=read_float(body, "top_p", lo=0.0, hi=1.0, default=d.top_p, where=where, lo_open=True),
            top_k=read_int(body, "top_k", lo=0, hi=2**31 - 1, default=d.top_k, where=where),
            threshold=self.threshold(body, where),
            max_per_step=read_int(body, "max_per_step", lo=0, hi=lim.max_tokens, default=d.max_per_step,
                                  where=where),
            seed=seed if seed is not None else 0,
            mode=sampler.mode, block_size=sampler.block_size, eps=sampler.eps,
            batch_invariant=sampler.batch_invariant, stop=sampler.stop)
        stops = read_stop(body, "stop", limit=lim.stop_strings, where=where)
        try:
            config = resolve_config(None, **values)
        except ConfigError as err:  # every field is in range here: the cross-field rules remain
            field_name = next((f for f in ("threshold", "max_per_step") if str(err).startswith(f"'{f}'")), "steps")
            raise bad(where, field_name, str(err).replace(f"'{field_name}': ", "")) from None
        return config, seed is not None, stops

    def threshold(self, body: dict, where: str) -> float:
        """The request's ``threshold``: 0 (off) or in [limits.min_threshold, 1]."""
        floor = self.cfg.limits.min_threshold
        value = read_float(body, "threshold", lo=0.0, hi=1.0, default=self.cfg.defaults.threshold, where=where)
        if 0 < value < floor:
            raise bad(where, "threshold", f"must be 0 (off) or in [{floor:g}, 1] on this server", value)
        return value

    def row(self, text: str, param: str, sampling: SamplingConfig, seeded: bool,
            stops: tuple[str, ...]) -> GenerationRequest:
        """Tokenize one prompt; empty, over-long or mask-carrying prompts are 400s naming ``param``."""
        if not text:
            raise bad("", param, "must not be empty")
        ids = self.engine.encode(text)
        if not ids:
            raise bad("", param, "tokenizes to nothing; give at least one token")
        limit = self.cfg.limits.prompt_tokens
        if len(ids) > limit:
            raise bad("", param, f"is {len(ids)} tokens; this server takes at most {limit}")
        if self.engine.mask_id in ids:
            raise bad("", param, "contains the mask token; only the completion is denoised")
        positions = self.engine.max_positions
        if positions is not None and len(ids) + sampling.max_new_tokens > positions:
            raise bad("", param, f"is {len(ids)} tokens; with max_tokens {sampling.max_new_tokens} that exceeds "
                                 f"the model's {positions} positions")
        return GenerationRequest(tuple(ids), sampling, stops, seeded)
