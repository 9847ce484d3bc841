"""The naive per-query paths every speed figure is compared with, measured in the same run.

* ``hf-naive``: what UniNER's official HF inference does: render the prompt as a string (``</s>``
  spelled as the tokenizer's EOS token), ``tokenizer(prompt)``, ``model.generate`` greedy, decode.
* ``llamacpp-naive``: llama-cpp-python's high-level completion API on the same GGUF, one call per
  query (temperature 0), as a user following its README would write it.

Both answer through ``timed_answer(text, label)``, the hook :func:`bench.runner.predict`
uses; neither shares anything with our backends beyond the template text.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from runtimes.base import DEFAULT_MAX_NEW_TOKENS
from bench.runner import TimedAnswer
from runtimes.errors import BackendUnavailable
from runtimes.prompt import render_prompt


class NaiveTransformers:
    name = "hf-naive"

    def __init__(self, path: str | Path, n_threads: int | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
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
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                         pad_token_id=self.tokenizer.eos_token_id)
        seconds = time.perf_counter() - started
        new = output[0, inputs["input_ids"].shape[1]:]
        raw = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return TimedAnswer(raw, int(inputs["input_ids"].shape[1]), int(len(new)), seconds, 0.0)

    def close(self) -> None:
        self.model = None


class NaiveLlamaCpp:
    name = "llamacpp-naive"

    def __init__(self, path: str | Path, n_threads: int | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendUnavailable("llamacpp-naive baseline", "llama-cpp-python", "llamacpp") from exc
        self.llm = Llama(model_path=str(path), n_ctx=2048, n_threads=n_threads or os.cpu_count(), verbose=False)
        self.eos_text = self.llm.detokenize([self.llm.token_eos()], special=True).decode("utf-8", errors="replace")
        self.max_new_tokens = max_new_tokens

    def timed_answer(self, text: str, label: str) -> TimedAnswer:
        started = time.perf_counter()
        result = self.llm.create_completion(render_prompt(text, label, eos=self.eos_text),
                                            max_tokens=self.max_new_tokens, temperature=0.0)
        seconds = time.perf_counter() - started
        usage = result["usage"]
        return TimedAnswer(result["choices"][0]["text"].strip(), usage["prompt_tokens"], usage["completion_tokens"], seconds, 0.0)

    def close(self) -> None:
        self.llm.close()
