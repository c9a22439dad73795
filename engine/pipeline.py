"""All stages from one TOML file, each cached by its inputs, its options and the hardaug version.

    oof -> mine -> random-sources (the control sample) -> label-model -> for every [augment.<method>]:
    augment the targeted (hard) and the random sources -> filter both -> kept (merged per arm) -> compare

With a [strategies] table, one mine-<name> stage per strategy takes the place of mine, and every strategy is
augmented and filtered like the targeted arm; the one random sample serves every strategy's control.

`load_config` checks the WHOLE file before any work: each table's keys become options of its `hardaug`
subcommand (`key = value` -> `--key value`, `true` -> `--key`, `false` -> `--no-key`, or nothing where false
is the option's default, a list -> a repeated option or one comma-separated value, as the option takes it),
and each stage's engine config is built from them and checked (engine.pipeline_options), so a typo, a wrong
type or a bad value stops the run naming the table and the key. `plan` turns the config into the ordered list
of stages; `Runner` runs them, each in OUT/stages/<stage>-<key>, and skips a stage whose job (engine.jobs, in the
stage folder's `.stage/`) finished and whose output files are still what it wrote (their digests are in the
done marker: an output edited or deleted by hand makes the stage run again), so a rerun after changing only
the filter threshold reruns only the filters and compare. A killed stage resumes through the stage's own
resumability. `run_pipeline` holds a lock on OUT (OUT/.run/lock): a second run into it is refused, naming
the first.

Three modules: `pipeline_load` (the TOML, checked), `pipeline_plan` (the stages, and the in-process tasks),
`pipeline_run` (the Runner and the results); this one names what they offer.
"""

from engine.pipeline_load import (  # noqa: F401  (the names the CLI, sizes and tests use)
    AUGMENTERS,
    OWNED,
    TABLES,
    PipelineConfig,
    apply_override,
    load_config,
    selection_steps,
)
from engine.pipeline_options import StageOptions, build_stage, table_argv  # noqa: F401
from engine.pipeline_plan import (  # noqa: F401
    LABEL_MODEL,
    Arg,
    Output,
    Stage,
    draw_random_sources,
    empty_output,
    merge_kept,
    mine_stages,
    not_compared,
    plan,
    shared_label_model,
)
from engine.pipeline_run import (  # noqa: F401
    STAGE_JOB,
    Runner,
    StageFailed,
    collect_results,
    run_pipeline,
    run_stages,
    stage_outputs,
    stage_record,
    write_not_compared,
)
