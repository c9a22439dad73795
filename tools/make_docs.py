"""Write docs/results.md from benchmarks/results/: every result's own markdown table under a heading, with the
date, command, machine, load and package versions read from its JSON record (benchmarks/machine.py
`run_record`), and an index of all of them. The README and docs/experiments.md quote these sections, so a
number in them can be checked against its file, and tests/test_docs.py fails when the committed page is not
what this script writes now (rerun it after adding or rerunning a benchmark).

    python tools/make_docs.py            # rewrite docs/results.md
    python tools/make_docs.py --check    # exit 1 when docs/results.md is out of date

Pure standard library and no engine import: the test runs it in milliseconds."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "results.md"

# Result names by prefix (the longest that matches wins) -> the section they belong to, in page order.
# A result whose name matches none lands in "Other results", so a new benchmark never breaks the page.
TOPICS: list[tuple[str, str, tuple[str, ...]]] = [
    ("The CPU pipeline on nsmc4", "bench_pipeline.py: `hardaug run` stage by stage", ("pipeline", "shared_model")),
    ("TF-IDF out-of-fold predictions", "bench_oof_levers.py and a timed `hardaug oof`", ("oof_levers", "oof_nsmc4")),
    ("Transformer OOF batching", "bench_oof.py: length-grouped padding vs fixed", ("oof",)),
    ("Mining", "bench_mine.py: scoring + selection vs the notebook's pandas", ("mine",)),
    ("Back-translation", "bench_backtranslate.py: the notebook's loops vs CTranslate2", ("backtranslate",)),
    ("Paraphrases", "bench_paraphrase.py: the notebook's generate loops vs vLLM", ("paraphrase",)),
    ("Filters", "bench_filters.py: near-duplicates and embeddings at full size", ("filters",)),
    ("Compare's bootstrap", "bench_bootstrap.py: sklearn per resample vs confusion counts", ("bootstrap",)),
    ("Ray vs one process", "bench_ray.py: actors vs one process", ("ray",)),
    ("Selection strategies and cleaning", "bench_strategies.py: every strategy arm", ("strategies",)),
    ("GPU", "benchmarks/gpu_*.sh", ("gpu",)),
]
OTHER = ("Other results", "", ())


def topic_of(name: str) -> tuple[str, str, tuple[str, ...]]:
    """The TOPICS entry whose longest prefix matches `name` (a result's path relative to the results folder)."""
    best, length = OTHER, -1
    for topic in TOPICS:
        for prefix in topic[2]:
            if name.startswith(prefix) and len(prefix) > length:
                best, length = topic, len(prefix)
    return best


def anchor(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation other than - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def machine_line(record: dict) -> str:
    """CPU, cores (usable / logical), memory and GPU from the record's `machine`, "-" where it has none."""
    machine = record.get("machine") or {}
    parts = []
    if machine.get("cpu"):
        parts.append(str(machine["cpu"]))
    usable = machine.get("usable_cpus", machine.get("usable_cores"))
    if usable is not None:
        logical = machine.get("logical_cpus")
        parts.append(f"{usable} usable core{'' if usable == 1 else 's'}" + (f" of {logical}" if logical else ""))
    if machine.get("memory_gib"):
        parts.append(f"{machine['memory_gib']} GiB")
    gpu = machine.get("gpu")
    if gpu:
        parts.append(f"GPU {gpu if isinstance(gpu, str) else json.dumps(gpu, sort_keys=True)}")
    if machine.get("device"):
        parts.append(f"device {machine['device']}")
    return ", ".join(parts) or "-"


def load_line(record: dict) -> str:
    """The load average before the first measurement (run_record's `load_before`; older records name it
    `load_start` or keep it in `machine`)."""
    machine = record.get("machine") or {}
    load = record.get("load_before") or record.get("load_start") or machine.get("load_before")
    return ", ".join(str(x) for x in load) if load else "-"


def versions_line(record: dict) -> str:
    versions = record.get("versions") or {}
    return ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None) or "-"


def demote(markdown: str) -> str:
    """A result's own headings three levels down, so they nest under its section of the page."""
    return "\n".join("###" + line if re.match(r"#{1,3} ", line) else line for line in markdown.splitlines())


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def results(folder: Path) -> list[tuple[str, dict | None, str | None]]:
    """(name, JSON record or None, markdown or None) for every result in `folder` and its subfolders, by
    name; a JSON file that is not a benchmark record (no date, e.g. gpu_smoke's doctor.json) is left out."""
    found: dict[str, list] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".json", ".md") or path.name == "README.md":
            continue
        name = path.relative_to(folder).with_suffix("").as_posix()
        entry = found.setdefault(name, [None, None])
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            entry[0] = data if isinstance(data, dict) and "date" in data else None
        else:
            entry[1] = path.read_text(encoding="utf-8")
    return [(n, rec, md) for n, (rec, md) in sorted(found.items()) if rec is not None or md is not None]


def render(folder: Path = RESULTS) -> str:
    """The whole page for the results in `folder`, deterministic (no time of its own)."""
    items = results(folder)
    order = {t[0]: i for i, t in enumerate([*TOPICS, OTHER])}
    items.sort(key=lambda item: (order[topic_of(item[0])[0]], item[0]))
    lines = [
        "# Measured results",
        "",
        "<!-- Generated by tools/make_docs.py from benchmarks/results/; do not edit: rerun the script. -->",
        "",
        "Every table below is a benchmark's own output (`benchmarks/results/<name>.md`), shown with the machine,",
        "load and versions its JSON record names. The scripts are described in",
        "[benchmarks/README.md](../benchmarks/README.md); what the numbers mean is in",
        "[experiments.md](experiments.md). The machine for most of them is a shared 2-core CPU: compare rows",
        "within one result, not single timings across results.",
        "",
        "| result | date | machine | load before | versions |",
        "|---|---|---|---|---|",
    ]
    for name, record, _ in items:
        record = record or {}
        lines.append(
            f"| [{name}](#{anchor(name)}) | {cell(str(record.get('date', '-')))} | {cell(machine_line(record))} "
            f"| {load_line(record)} | {cell(versions_line(record))} |"
        )
    current = None
    for name, record, markdown in items:
        title, what, _ = topic_of(name)
        if title != current:
            current = title
            lines += ["", f"## {title}"] + (["", f"{what}."] if what else [])
        lines += ["", f"### {name}", ""]
        sources = [f"[`{name}.json`](../benchmarks/results/{name}.json)"] if record else []
        sources += [f"[`{name}.md`](../benchmarks/results/{name}.md)"] if markdown is not None else []
        lines.append(f"Source: {', '.join(sources)}.")
        if record:
            if isinstance(record.get("command"), str):
                lines.append(f"Command: `{record['command']}`.")
            lines.append(
                f"Date {record.get('date', '-')}; machine: {machine_line(record)}; load before: {load_line(record)}; "
                f"versions: {versions_line(record)}."
            )
        lines += ["", demote(markdown).strip() if markdown else "(no markdown table: see the JSON file)"]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/results.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python tools/make_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
