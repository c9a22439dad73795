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
from engine.config import AnalysisConfig, CompareConfig, OofConfig, TfidfConfig, TransformerConfig
from engine.errors import InputError
from engine.filters import FilterConfig
from engine.options import CLI, SAME, from_dict, to_argv

CONFIGS = {
    "paraphrase": (ParaphraseConfig, ["--model", "m"], {"model": "m"}),
    "backtranslate": (BacktranslateConfig, ["--model", "m"], {"model": Path("m")}),
    "eda": (EdaConfig, [], {}),
    "filter": (FilterConfig, ["--input", "augmented.parquet"], {}),
    "oof": (OofConfig, [], {}),
    "mine": (AnalysisConfig, [], {}),
    "compare": (CompareConfig, [], {}),
}
# every config whose fields have flags in a command (oof's nested configs have theirs in its --help too)
FLAGGED = {command: (config_cls,) for command, (config_cls, _, _) in CONFIGS.items()}
FLAGGED["oof"] = (OofConfig, TfidfConfig, TransformerConfig)


def _subparser(command: str) -> argparse.ArgumentParser:
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


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


@pytest.mark.parametrize("command", sorted(FLAGGED))
def test_each_flag_default_is_its_field_default(command):
    """The default is written once, on the field: the parser's default is the field's (or the flag's own
    "not given" value that `convert` resolves), and every flagged field has its flag with help."""
    dests = {action.dest: action for action in _subparser(command)._actions}
    for config_cls in FLAGGED[command]:
        for field in dataclasses.fields(config_cls):
            spec = field.metadata.get(CLI)
            if spec is None or not spec.cli:
                continue
            action = dests[spec.dest or field.name]
            assert action.help, field.name
            if field.default is dataclasses.MISSING:
                continue
            expected = field.default if spec.cli_default is SAME else spec.cli_default
            assert action.default == expected, (config_cls.__name__, field.name)
            assert spec.convert is None or spec.convert(action.default) == field.default, field.name


def test_oof_and_compare_flags_build_their_configs():
    argv = ["oof", "--folds", "5", "--C", "1", "--solver", "lbfgs", "--backend", "transformers", "--lr", "1e-4"]
    argv += ["--train-batch-size", "32", "--select-epoch", "last", "--dynamics"]
    args = build_parser().parse_args(argv)
    assert __import__("engine.cli.oof", fromlist=["x"]).build_config(args) == OofConfig(
        n_folds=5,
        backend="transformers",
        tfidf=TfidfConfig(C=1.0, solver="lbfgs"),
        transformer=TransformerConfig(lr=1e-4, train_batch_size=32, select_epoch="last", dynamics=True),
    )
    args = build_parser().parse_args(["compare", "--seeds", "3,4", "--confident", "0.8", "--bootstrap", "200"])
    assert __import__("engine.cli.compare", fromlist=["x"]).build_config(args) == CompareConfig(
        seeds=(3, 4), confident_threshold=0.8, bootstrap=200
    )
    args = build_parser().parse_args(["mine", "--tokenizer", "whitespace", "--examples", "3"])
    assert __import__("engine.cli.mine", fromlist=["x"]).build_config(args) == AnalysisConfig(
        tokenizer="whitespace", n_examples=3
    )


@pytest.mark.parametrize("config_cls", [OofConfig, CompareConfig, AnalysisConfig])
def test_from_dict_reads_back_a_config_as_a_dict(config_cls):
    config = config_cls()
    assert from_dict(config_cls, dataclasses.asdict(config)) == config


@pytest.mark.parametrize(
    ("config_cls", "where", "table", "message"),
    [
        (OofConfig, "oof", {"n_fold": 5}, r"unknown key 'n_fold' in \[oof\]; did you mean 'n_folds'\?"),
        (OofConfig, "oof", {"tfidf": {"ngram_mx": 2}}, r"unknown key 'ngram_mx' in \[oof.tfidf\]; did you mean"),
        (OofConfig, "oof", {"transformer": {"epoch": 2}}, r"'epoch' in \[oof.transformer\]; did you mean 'epochs'"),
        (CompareConfig, "compare", {"bootstarp": 200}, r"unknown key 'bootstarp' in \[compare\]; did you mean"),
        (AnalysisConfig, "mine", {"tokeniser": "kiwi"}, r"unknown key 'tokeniser' in \[mine\]; did you mean"),
    ],
)
def test_from_dict_refuses_a_typo_in_oof_mine_compare(config_cls, where, table, message):
    with pytest.raises(ValueError, match=message):
        from_dict(config_cls, table, where=where)


@pytest.mark.parametrize(
    ("config_cls", "where", "table", "message"),
    [
        (OofConfig, "oof", {"n_folds": "10"}, r"'n_folds' in \[oof\] must be int, got '10'"),
        (OofConfig, "oof", {"backend": 1}, r"'backend' in \[oof\] must be str"),
        (OofConfig, "oof", {"tfidf": {"C": "2"}}, r"'C' in \[oof.tfidf\] must be float"),
        (OofConfig, "oof", {"transformer": {"dynamics": "yes"}}, r"'dynamics' in \[oof.transformer\] must be bool"),
        (OofConfig, "oof", {"tfidf": 3}, r"'tfidf' in \[oof\] must be TfidfConfig, got 3"),
        (CompareConfig, "compare", {"seeds": "0,1"}, r"'seeds' in \[compare\] must be a list of int"),
        (CompareConfig, "compare", {"seeds": [0, "1"]}, r"'seeds' in \[compare\] must be a list of int"),
        (CompareConfig, "compare", {"bootstrap": 1.5}, r"'bootstrap' in \[compare\] must be int"),
        (AnalysisConfig, "mine", {"n_examples": True}, r"'n_examples' in \[mine\] must be int"),
    ],
)
def test_from_dict_refuses_a_wrong_type_in_oof_mine_compare(config_cls, where, table, message):
    with pytest.raises(ValueError, match=message):
        from_dict(config_cls, table, where=where)


def test_from_dict_leaves_the_value_checks_to_the_config():
    with pytest.raises(ValueError, match="n_folds must be at least 2"):
        from_dict(OofConfig, {"n_folds": 1}, where="oof")
    with pytest.raises(ValueError, match="bootstrap must be >= 100"):
        from_dict(CompareConfig, {"bootstrap": 10}, where="compare")


@pytest.mark.parametrize(
    ("command", "config_cls", "name", "value"),
    [
        ("oof", OofConfig, "n_folds", 5),
        ("oof", TransformerConfig, "lr", 1e-4),
        ("mine", AnalysisConfig, "n_examples", 7),
        ("compare", CompareConfig, "bootstrap", 2000),
    ],
)
def test_changing_only_the_field_default_changes_the_flag(monkeypatch, command, config_cls, name, value):
    field = next(f for f in dataclasses.fields(config_cls) if f.name == name)
    monkeypatch.setattr(field, "default", value)
    spec = field.metadata[CLI]
    sub = _subparser(command)
    assert getattr(sub.parse_args([]), spec.dest or name) == value
    action = next(a for a in sub._actions if a.dest == (spec.dest or name))
    assert action.help.endswith(f"(default: {value})")


# A non-default value for every kind of flag: switch, negatable, read through convert, repeated, comma list.
NON_DEFAULT = {
    "paraphrase": ParaphraseConfig(model="m", temperature=0.5, top_p=0.8, guided=False),
    "backtranslate": BacktranslateConfig(
        model=Path("m"), pivots=("de_DE", "fr_XX"), variants=3, sampling_temperature=0.7
    ),
    "eda": EdaConfig(n=2, p_delete=0.25, protect_negation=False, seed=7),
    "filter": FilterConfig(label_check=False, dedup_train=False, cheap_checks=False),
    "oof": OofConfig(
        n_folds=3, seed=5, tfidf=TfidfConfig(C=2.0, solver="lbfgs"), transformer=TransformerConfig(dynamics=True)
    ),
    "mine": AnalysisConfig(tokenizer="whitespace", n_examples=3),
    "compare": CompareConfig(seeds=(3, 4), confident_threshold=0.8, combine=("a=hardness", "b=class-balanced")),
}


@pytest.mark.parametrize("command", sorted(CONFIGS))
@pytest.mark.parametrize("which", ["default", "changed"])
def test_to_argv_round_trips_every_commands_config(command, which):
    """to_argv is the inverse of add_options + config_from_args: the command's own parser and build_config
    read its flags back into the same config."""
    config_cls, _, required = CONFIGS[command]
    config = config_cls(**required) if which == "default" else NON_DEFAULT[command]
    flags = to_argv(config_cls, config)
    if which == "changed":
        assert flags, command
    files = ["--input", "augmented.parquet"] if command == "filter" else []  # no config field: the command's own
    args = build_parser().parse_args([command, *files, *flags])
    module = __import__(args.func.__module__, fromlist=["build_config"])
    assert module.build_config(args) == config


def test_to_argv_renders_a_table_in_its_order_as_the_flags_say_it():
    table = {"no-similarity": True, "seeds": [0, 1, 2], "n": 4, "guided": False, "C": 1.0}
    assert to_argv(FilterConfig, {"no-similarity": True}) == ["--no-similarity"]
    assert to_argv(CompareConfig, {"seeds": [0, 1, 2], "combine": ["a=hardness", "b=hardness"]}) == [
        "--seeds",
        "0,1,2",
        "--combine",
        "a=hardness",
        "--combine",
        "b=hardness",
    ]
    assert to_argv(ParaphraseConfig, {"guided": False, "no-guided": False}) == ["--no-guided", "--guided"]
    assert to_argv(OofConfig, {"folds": 5, "n_folds": 3}) == ["--folds", "5", "--folds", "3"]
    assert to_argv(TfidfConfig, {"C": 1.0}) == ["--C", "1.0"]
    assert table  # the keys above are flag names (folds) or field names (n_folds), as in a TOML table


@pytest.mark.parametrize(
    ("config_cls", "table", "message"),
    [
        (OofConfig, {"fold": 3}, "unknown key 'fold' in [oof]; did you mean 'folds'?"),
        (EdaConfig, {"n": True}, "[oof] n = true: --n takes a value, not true/false."),
        (FilterConfig, {"no-similarity": 1}, "[oof] no-similarity = 1: --no-similarity is a switch"),
        (EdaConfig, {"n": [1, 2]}, "[oof] n = [1, 2]: --n takes one value, not a list."),
        (CompareConfig, {"seeds": []}, "[oof] seeds = []: expected a non-empty list"),
    ],
)
def test_to_argv_refuses_what_no_flag_says_naming_the_key(config_cls, table, message):
    with pytest.raises(InputError) as exc:
        to_argv(config_cls, table, where="oof")
    assert message in str(exc.value)
