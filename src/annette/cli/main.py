"""Entry point: ``annette``. Each command group lives in its own module and registers itself here."""

from __future__ import annotations

import warnings

import typer

from annette.cli.common import STATE, configure_logging

app = typer.Typer(
    name="annette",
    help="Estimate neural-network latency layer by layer with stacked mapping and layer models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        import annette

        typer.echo(f"annette {annette.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress (INFO)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and DEBUG logs."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print annette's version and exit."
    ),
) -> None:
    STATE["debug"] = debug
    configure_logging(verbose, debug)
    # The CLI prints estimates' warnings itself, one line each (cli.common.warn_once), not as Python warnings
    # (annette.hardware.TargetMismatchWarning, matched by its message: importing it here would slow every command).
    warnings.filterwarnings("ignore", message="hardware model .* was fitted for another target")


def _register() -> None:
    # Explicit list of command modules; each exposes ``register(app)``.
    from annette.cli import (
        commands_bench,
        commands_build,
        commands_evaluate,
        commands_graph,
        commands_legacy,
        commands_model,
    )

    for module in (commands_graph, commands_model, commands_legacy, commands_evaluate, commands_bench, commands_build):
        module.register(app)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
