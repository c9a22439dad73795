"""User mistakes are `InputError` (one line from the CLI, exit 2); anything else is a bug and keeps its traceback.

The hub's generation config is part of a paraphrase job's fingerprint: only "the model has none" may read as
{}; every other failure stops the job. The hub here is a local HTTP server that answers like the real one
(404 with X-Error-Code: EntryNotFound for a missing file); nothing leaves the machine.
"""

from __future__ import annotations

import http.server
import logging
import threading
from typing import ClassVar

import numpy as np
import pytest

from engine.augment.backtranslate import BacktranslateConfig
from engine.augment.eda import EdaConfig
from engine.augment.paraphrase import ParaphraseConfig
from engine.cli import main
from engine.cluster.session import ClusterOptions
from engine.config import AnalysisConfig, CompareConfig, OofConfig, TfidfConfig, TransformerConfig
from engine.errors import InputError
from engine.filters.config import FilterConfig
from engine.mine import DataMapRegions, TopQuantile, WeakClasses
from engine.options import from_dict

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    "make",
    [
        lambda: TfidfConfig(C=0),
        lambda: TransformerConfig(lr=0),
        lambda: OofConfig(n_folds=1),
        lambda: AnalysisConfig(hard_quantile=2),
        lambda: CompareConfig(bootstrap=5),
        lambda: EdaConfig(n=0),
        lambda: ParaphraseConfig(model="m", top_p=2),
        lambda: BacktranslateConfig(model="m", threads=-1),
        lambda: FilterConfig(dup_threshold=2),
        lambda: ClusterOptions(replicas=0),
        lambda: TopQuantile(2),
        lambda: DataMapRegions(("nowhere",)),
        lambda: WeakClasses(0),
        lambda: from_dict(TfidfConfig, {"max_feature": 10}, where="filter.tfidf"),
        lambda: from_dict(TfidfConfig, {"C": "a lot"}, where="filter.tfidf"),
    ],
    ids=[
        "tfidf",
        "transformer",
        "oof",
        "analysis",
        "compare",
        "eda",
        "paraphrase",
        "backtranslate",
        "filter",
        "cluster",
        "top-quantile",
        "data-map",
        "weak-classes",
        "unknown-key",
        "wrong-kind",
    ],
)
def test_every_config_refuses_with_an_input_error(make):
    with pytest.raises(InputError):  # still a ValueError: library callers that catch ValueError keep working
        make()


def test_the_cli_shows_a_user_mistake_as_one_line(tmp_path, capsys):
    code = main(["oof", "--train", str(tmp_path / "t.csv"), "--folds", "1", "--out-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "n_folds must be at least 2" in err, err
    assert "Traceback" not in err


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """A ValueError that is not an InputError (here NumPy's) is a bug: no "error:" line with exit 2."""
    import engine.cli.eda

    def buggy(args):
        return np.zeros(-1)  # ValueError: negative dimensions are not allowed

    monkeypatch.setattr(engine.cli.eda, "run_eda_command", buggy)
    with pytest.raises(ValueError, match="negative dimensions"):
        main(["eda", "--input", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "out.parquet")])


class _Hub(http.server.BaseHTTPRequestHandler):
    """The hub's answers for owner/<name>/resolve/main/generation_config.json: `files` maps a repo to the
    file's bytes; a repo not in it has no such file (404 EntryNotFound, as the hub says it)."""

    files: ClassVar[dict[str, bytes]] = {}

    def _answer(self, body: bool) -> None:
        repo = "/".join(self.path.strip("/").split("/")[:2])
        data = self.files.get(repo) if self.path.endswith("/resolve/main/generation_config.json") else None
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound" if "/resolve/" in self.path else "RepoNotFound")
            self.send_header("X-Repo-Commit", REVISION)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", REVISION)
        self.send_header("ETag", f'"{len(data)}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(_Hub, "files", {})
    yield _Hub.files
    server.shutdown()
    server.server_close()


def test_a_hub_model_without_a_generation_config_reads_as_none_and_says_so(hub, caplog):
    from engine.augment.sampling import hub_generation_config

    with caplog.at_level(logging.INFO, logger="engine.augment.sampling"):
        assert hub_generation_config("owner/plain") == {}
    assert "owner/plain has no generation_config.json on the hub" in caplog.text


def test_a_hub_generation_config_is_read_as_transformers_reads_it(hub):
    from engine.augment.sampling import hub_generation_config

    hub["owner/tuned"] = b'{"do_sample": true, "temperature": 0.7, "top_k": 20}'
    generation = hub_generation_config("owner/tuned")
    assert {key: generation[key] for key in ("do_sample", "temperature", "top_k")} == {
        "do_sample": True,
        "temperature": 0.7,
        "top_k": 20,
    }


def test_a_broken_hub_generation_config_stops_the_job_instead_of_reading_as_none(hub):
    """Before: any exception here became {}, a silent change of the sampling defaults and the fingerprint."""
    from engine.augment.sampling import hub_generation_config

    hub["owner/broken"] = b"not json"
    with pytest.raises(InputError, match=r"--model owner/broken: its generation_config.json on the hub cannot"):
        hub_generation_config("owner/broken")
