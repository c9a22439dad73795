"""`TransformersParaphraser`: batched `generate` for machines without vLLM (also the benchmark baseline)."""

from __future__ import annotations

import gc
import logging
import time

from engine.augment.paraphrase.base import Completion, Paraphraser
from engine.augment.paraphrase.config import ParaphraseConfig
from engine.augment.paraphrase.model import ModelInfo, check_model
from engine.errors import InputError
from engine.models import safe_load

log = logging.getLogger(__name__)


class TransformersParaphraser(Paraphraser):
    """Batched Hugging Face `generate`: prompts sorted by length, batches of `batch_size`, left padding,
    `num_return_sequences=samples`; outputs restored to input order. Seeds repeat for the same texts
    and batch size (sampling noise depends on the batch a text lands in)."""

    backend = "transformers"

    def __init__(self, config: ParaphraseConfig, info: ModelInfo | None = None) -> None:
        info = info or check_model(config.model, backend="transformers")
        super().__init__(config, info)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if config.load_format == "dummy":
            raise InputError("load_format='dummy' is a vLLM option; the transformers backend loads real weights")
        if config.guided:
            log.info("guided JSON is a vLLM feature; the transformers backend parses free text")
        self.device = "cuda" if config.device == "auto" and torch.cuda.is_available() else config.device
        self.device = "cpu" if self.device == "auto" else self.device
        with safe_load(config.model, "--model"):
            self.tokenizer = AutoTokenizer.from_pretrained(info.load_from or config.model, trust_remote_code=False)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
        started = time.perf_counter()
        with safe_load(config.model, "--model"):
            model = AutoModelForCausalLM.from_pretrained(
                info.load_from or config.model, dtype=dtype, trust_remote_code=False
            )
        self.model = model.to(self.device).eval()
        log.info("transformers model %s loaded in %.1f s", config.model, time.perf_counter() - started)
        self._stop_ids = self._eos_ids()

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _complete(self, texts, conversations, config, progress):
        import torch

        prompts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations
        ]
        lengths = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        results: list = [None] * len(prompts)
        bar = progress(total=len(prompts), desc="generating", unit="prompt") if callable(progress) else None
        tokens, started = 0, time.perf_counter()
        for b, start in enumerate(range(0, len(order), config.batch_size)):
            batch = order[start : start + config.batch_size]
            encoded = self.tokenizer(
                [prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.device)
            if config.seed is not None:
                torch.manual_seed(config.seed + b)
            with torch.inference_mode():
                generated = self.model.generate(
                    **encoded,
                    **self._generate_options(config),
                )
            new = generated[:, encoded["input_ids"].shape[1] :].cpu().tolist()
            for j, i in enumerate(batch):
                rows = new[j * config.samples : (j + 1) * config.samples]
                results[i] = (prompts[i], [self._completion(row, config) for row in rows])
                tokens += sum(c.tokens for c in results[i][1])
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix_str(f"{tokens / (time.perf_counter() - started):.1f} output tokens/s")
        if bar is not None:
            bar.close()
        return results

    def _generate_options(self, config: ParaphraseConfig) -> dict:
        options = {
            "max_new_tokens": config.max_tokens,
            "num_return_sequences": config.samples,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": config.temperature > 0,
        }
        if config.temperature > 0:
            options.update(self.sampling(config))  # every option explicit: the model's defaults already in
        if config.ignore_eos:
            options["min_new_tokens"] = config.max_tokens  # EOS suppressed until max: equal work per prompt
        return options

    def _completion(self, row: list[int], config: ParaphraseConfig) -> Completion:
        end = next((k for k, t in enumerate(row) if t in self._stop_ids), None)
        kept = row if end is None else row[:end]
        finish = "stop" if end is not None else "length"
        return Completion(self.tokenizer.decode(kept, skip_special_tokens=True), finish, len(kept) + (end is not None))

    def close(self) -> None:
        self.__dict__.pop("model", None)
        gc.collect()
