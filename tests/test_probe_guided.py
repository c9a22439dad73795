"""`probe_guided`, the check a vLLM paraphraser runs at start: only "no structured-output backend here" turns
guided JSON off; out of memory or any other failure of the probe request stops the job with its own error."""

from __future__ import annotations

import logging

import pytest

from engine.augment.paraphrase import guided_unsupported, probe_guided


def _raise(exc: BaseException):
    def request():
        raise exc

    return request


def test_a_working_backend_keeps_guided_json_on():
    assert probe_guided(lambda: None) is True


def test_out_of_memory_stops_the_job_instead_of_turning_guided_json_off(caplog):
    torch = pytest.importorskip("torch")
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with caplog.at_level(logging.WARNING), pytest.raises(torch.cuda.OutOfMemoryError, match="out of memory"):
        probe_guided(_raise(oom))
    assert "parsing free text" not in caplog.text
    for other in (RuntimeError("EngineCore died"), ValueError("max_tokens must be at least 1"), KeyError("x")):
        assert not guided_unsupported(other)
        with pytest.raises(type(other)):
            probe_guided(_raise(other))


def test_an_unsupported_backend_turns_guided_json_off(caplog):
    with caplog.at_level(logging.WARNING):
        assert probe_guided(_raise(ModuleNotFoundError("No module named 'xgrammar'"))) is False
        assert probe_guided(_raise(ValueError("Unsupported structured output backend: outlines"))) is False
    assert "parsing free text" in caplog.text


def test_vllm_rejecting_the_request_for_its_backend_turns_guided_json_off():
    exceptions = pytest.importorskip("vllm.exceptions")  # vLLM's own error class, as its validation raises it
    error = exceptions.VLLMValidationError("The provided JSON schema contains features not supported by xgrammar.")
    assert guided_unsupported(error) and probe_guided(_raise(error)) is False
