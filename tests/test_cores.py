"""engine.cores: the one rule for "how many cores may this process use" and the thread counts built on it.
The cgroup readers run on real files laid out as the kernel shows them (v2 `cpu.max`, v1 `cpu.cfs_*`)."""

from __future__ import annotations

import logging
import os

import pytest

from engine.cores import cgroup_quota, core_ids, quota_cores, threads_for, usable_cores


@pytest.mark.parametrize(
    ("line", "cores"),
    [("200000 100000\n", 2.0), ("150000 100000", 1.5), ("max 100000", None), ("-1 100000", None), ("", None)],
)
def test_quota_line_in_cores(line, cores):
    assert quota_cores(line) == cores


def _cgroup(tmp_path, own: str, files: dict[str, str]):
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "self_cgroup").write_text(own)
    return root, tmp_path / "self_cgroup"


def test_v2_quota_on_a_parent_binds_the_child(tmp_path):
    root, own = _cgroup(
        tmp_path,
        "0::/job/step\n",
        {"job/cpu.max": "300000 100000\n", "job/step/cpu.max": "max 100000\n", "cpu.max": "800000 100000\n"},
    )
    assert cgroup_quota(root, own) == 3.0


def test_v1_quota_and_no_quota(tmp_path):
    root, own = _cgroup(
        tmp_path,
        "4:memory:/x\n1:cpu,cpuacct:/docker/abc\n",
        {"cpu/docker/abc/cpu.cfs_quota_us": "50000\n", "cpu/docker/abc/cpu.cfs_period_us": "100000\n"},
    )
    assert cgroup_quota(root, own) == 0.5
    root, own = _cgroup(
        tmp_path / "none",
        "1:cpu:/\n",
        {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
    )
    assert cgroup_quota(root, own) is None
    assert cgroup_quota(tmp_path / "missing", tmp_path / "missing" / "cgroup") is None


def test_usable_cores_is_the_affinity_mask_at_most():
    assert 1 <= usable_cores() <= len(core_ids())
    if hasattr(os, "sched_getaffinity"):
        assert core_ids() == sorted(os.sched_getaffinity(0))


def test_threads_default_explicit_and_capped(caplog):
    cores = usable_cores()
    assert threads_for(None) == threads_for(0) == cores
    assert threads_for(None, most=1) == 1
    assert threads_for(1) == 1
    with caplog.at_level(logging.WARNING, logger="engine.cores"):
        assert threads_for(cores + 62, what="--threads") == cores
    assert f"--threads {cores + 62} > {cores} usable cores" in caplog.text
