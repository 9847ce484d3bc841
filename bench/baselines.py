"""The naive per-query paths every speed figure is compared with, measured in the same run.

* ``hf-naive``: what UniNER's official HF inference does: render the prompt as a string (``</s>``
  spelled as the tokenizer's EOS token), ``tokenizer(prompt)``, ``model.generate`` greedy, decode.
* ``llamacpp-naive``: llama-cpp-python's high-level completion API on the same GGUF, one call per
  query (temperature 0), as a user following its README would write it.

Both answer through ``timed_answer(text, label)``, the hook :func:`uner.bench.runner.predict`
uses; neither shares anything with our backends beyond the template text.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from uner.base import DEFAULT_MAX_NEW_TOKENS
from uner.bench.runner import TimedAnswer
from uner.errors import BackendUnavailable
from uner.llamacpp_backend import amx_in_use, set_fields
from uner.prompt import render_prompt


class NaiveTransformers:
    name = "hf-naive"

    def __init__(
        self, path: str | Path, n_threads: int | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    ) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise BackendUnavailable("hf-naive baseline", "transformers", "torch") from exc
        if n_threads:
            torch.set_num_threads(n_threads)
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.max_new_tokens = max_new_tokens

    def timed_answer(self, text: str, label: str) -> TimedAnswer:
        inputs = self.tokenizer(render_prompt(text, label, eos=self.tokenizer.eos_token), return_tensors="pt")
        started = time.perf_counter()
        with self._torch.inference_mode():
            output = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=self.tokenizer.eos_token_id
            )
        seconds = time.perf_counter() - started
        new = output[0, inputs["input_ids"].shape[1] :]
        raw = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return TimedAnswer(raw, int(inputs["input_ids"].shape[1]), int(len(new)), seconds, 0.0)

    def close(self) -> None:
        self.model = None


@contextlib.contextmanager
def _without_amx_repacking() -> Iterator[None]:
    """llama-cpp-python's ``Llama`` offers no ``use_extra_bufts``; where llama.cpp's AMX path
    crashes (see :func:`uner.llamacpp_backend.amx_in_use`) its default model params are
    wrapped for this one construction (the baseline runs in its own process)."""
    import llama_cpp
    from llama_cpp import llama as llama_module

    if not amx_in_use(llama_cpp):
        yield
        return
    default = llama_module.llama_cpp.llama_model_default_params

    def without_extra_buffers():
        params = default()
        set_fields(params, use_extra_bufts=False)
        return params

    llama_module.llama_cpp.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        llama_module.llama_cpp.llama_model_default_params = default


class NaiveLlamaCpp:
    name = "llamacpp-naive"

    def __init__(
        self, path: str | Path, n_threads: int | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendUnavailable("llamacpp-naive baseline", "llama-cpp-python", "llamacpp") from exc
        with _without_amx_repacking():
            self.llm = Llama(model_path=str(path), n_ctx=2048, n_threads=n_threads or os.cpu_count(), verbose=False)
        self.eos_text = self.llm.detokenize([self.llm.token_eos()], special=True).decode("utf-8", errors="replace")
        self.max_new_tokens = max_new_tokens

    def timed_answer(self, text: str, label: str) -> TimedAnswer:
        started = time.perf_counter()
        result = self.llm.create_completion(
            render_prompt(text, label, eos=self.eos_text), max_tokens=self.max_new_tokens, temperature=0.0
        )
        seconds = time.perf_counter() - started
        usage = result["usage"]
        return TimedAnswer(
            result["choices"][0]["text"].strip(), usage["prompt_tokens"], usage["completion_tokens"], seconds, 0.0
        )

    def close(self) -> None:
        self.llm.close()
