"""The ``eventpro`` command: broker, worker, dev environment and operator tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ("app", "main")

app = typer.Typer(
    name="eventpro",
    help="EventPro: real-time ticketing on Faust, with an embedded Kafka-protocol broker.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """EventPro: real-time ticketing on Faust, with an embedded Kafka-protocol broker."""


@app.command()
def broker(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 9092,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where topics and group offsets are stored.")
    ] = Path("eventpro-data/broker"),
    initial_rebalance_delay_ms: Annotated[
        int, typer.Option(help="Wait this long after the first member joins an empty group.")
    ] = 3000,
    default_partitions: Annotated[
        int, typer.Option(help="Partitions of topics created automatically.")
    ] = 1,
    fsync: Annotated[
        bool, typer.Option(help="fsync appended data about once a second (default: OS cache).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "INFO",
) -> None:
    """Run the embedded single-node Kafka-protocol broker (dev, tests, one machine)."""
    from eventpro.broker.runner import serve
    from eventpro.logconfig import configure_logging

    configure_logging(log_level)
    serve(
        host=host,
        port=port,
        data_dir=data_dir,
        initial_rebalance_delay_ms=initial_rebalance_delay_ms,
        fsync=fsync,
        default_partitions=default_partitions,
    )


def main() -> None:
    """Console-script entry point."""
    app()
