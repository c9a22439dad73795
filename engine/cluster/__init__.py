"""Running stages on Ray (Ray Data actor pools for the augmenters, Ray tasks for the folds).

Only imported when a command gets `--ray`; `ray` itself is imported lazily (`session.import_ray`), so the
package works without the `ray` extra until a cluster is asked for.
"""
