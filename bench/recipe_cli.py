"""``uner-export recipe``: the command over :func:`uner.bench.recipe_run.run_recipe`.

It lives in the bench, not in :mod:`uner.toolkit`, because a recipe benches every variant it
builds; it reaches ``uner-export`` through the ``uner_export.commands`` entry point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from uner._cli_utils import QuietOpt, ThreadsOpt, setup_logging
from uner.bench.recipe_run import run_recipe
from uner.toolkit.gates import describe
from uner.toolkit.recipes import available_recipes, load_recipe

RECIPE_EXAMPLES = """
Examples:
  uner-export recipe UniNER-7B-type --out ./out --data-dir ./data
  uner-export recipe uniner-smol-135m --out ./out/smol            # the whole ladder on a laptop CPU
  uner-export recipe ./my-model.toml --out ./out --no-bench

Recipes: {names} (export_recipes/), or a path to a .toml file.
"""


def recipe(
    name: Annotated[
        str, typer.Argument(help="Recipe name (export_recipes/NAME.toml) or path to a recipe file.", show_default=False)
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (the layout of the Hub repo).", show_default=False)
    ],
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Folder holding the recipe's bench files (default: $UNER_DATA).", show_default=False
        ),
    ] = None,
    no_bench: Annotated[
        bool, typer.Option("--no-bench", help="Skip the parity check (variants stay unchecked: not publishable).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild variants even when their files match the manifest.")
    ] = False,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Build, check and index every variant a recipe names; resumable (finished variants are kept)."""
    setup_logging(quiet)
    run = run_recipe(
        load_recipe(name), out, data_dir=data_dir, bench=not no_bench, force=force, threads=threads, progress=not quiet
    )
    for variant, entry in run.index["variants"].items():
        bench = entry.get("bench") or {}
        score = describe(bench, entry["max_f1_drop"]) if bench else entry.get("reason", "")
        typer.echo(f"{variant}\t{entry['status']}\t{entry['path']}\t{score}")
    typer.echo(str(out / "manifest.json"))


recipe.epilog = RECIPE_EXAMPLES.format(names=", ".join(available_recipes()))
