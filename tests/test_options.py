"""The engines' config dataclasses drive their flags: defaults cannot drift, and `from_dict` is strict."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from engine.augment.backtranslate import BacktranslateConfig
from engine.augment.eda import EdaConfig
from engine.augment.paraphrase import ParaphraseConfig
from engine.cli import build_parser
from engine.config import TfidfConfig
from engine.filters import FilterConfig
from engine.options import CLI, from_dict

CONFIGS = {
    "paraphrase": (ParaphraseConfig, ["--model", "m"], {"model": "m"}),
    "backtranslate": (BacktranslateConfig, ["--model", "m"], {"model": Path("m")}),
    "eda": (EdaConfig, [], {}),
    "filter": (FilterConfig, ["--input", "augmented.parquet"], {}),
}


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_flags_without_values_build_the_default_config(command):
    config_cls, argv, required = CONFIGS[command]
    args = build_parser().parse_args([command, *argv])
    module = __import__(args.func.__module__, fromlist=["build_config"])
    assert module.build_config(args) == config_cls(**required)


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_every_flagged_field_has_help_and_a_flag(command):
    config_cls = CONFIGS[command][0]
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    dests = {action.dest: action for action in sub._actions}
    for field in dataclasses.fields(config_cls):
        spec = field.metadata.get(CLI)
        if spec is not None and spec.cli:
            dest = spec.dest or field.name
            assert dest in dests and dests[dest].help, field.name


def test_from_dict_builds_the_same_config_as_the_constructor():
    table = {"model": "m", "temperature": 0.5, "top-p": 1, "guided": False}
    assert from_dict(ParaphraseConfig, table) == ParaphraseConfig(model="m", temperature=0.5, top_p=1.0, guided=False)


def test_from_dict_refuses_a_typo_with_a_suggestion():
    with pytest.raises(
        ValueError, match=r"unknown key 'tempreature' in \[augment.paraphrase\]; did you mean 'temperature'\?"
    ):
        from_dict(ParaphraseConfig, {"model": "m", "tempreature": 0.5}, where="augment.paraphrase")


@pytest.mark.parametrize(
    ("key", "value"), [("guided", "false"), ("n", 2.5), ("n", True), ("temperature", "hot"), ("top_k", [1])]
)
def test_from_dict_refuses_a_wrong_type_naming_the_key(key, value):
    with pytest.raises(ValueError, match=rf"'{key}' in \[augment.paraphrase\] must be"):
        from_dict(ParaphraseConfig, {"model": "m", key: value}, where="augment.paraphrase")


def test_from_dict_still_validates_values():
    with pytest.raises(ValueError, match="top_p must be in"):
        from_dict(ParaphraseConfig, {"model": "m", "top_p": 1.5})


def test_from_dict_reads_a_nested_table_and_names_it():
    config = from_dict(FilterConfig, {"similarity": False, "tfidf": {"max_features": 1000}}, where="filter")
    assert config == FilterConfig(similarity=False, tfidf=TfidfConfig(max_features=1000))
    with pytest.raises(ValueError, match=r"unknown key 'max_feature' in \[filter.tfidf\]; did you mean 'max_features'"):
        from_dict(FilterConfig, {"tfidf": {"max_feature": 1000}}, where="filter")
