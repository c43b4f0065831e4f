"""The ``eventpro`` command: broker, worker, dev environment and operator tools."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

if TYPE_CHECKING:  # pragma: nocover
    from eventpro.settings import Settings

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


def _settings(**overrides: object) -> Settings:
    """Settings from the environment with the command-line options that were given on top."""
    from eventpro.settings import Settings

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command()
def worker(
    web_port: Annotated[
        int | None, typer.Option(help="HTTP port of this worker [env EVENTPRO_WEB_PORT; 6066].")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Table state of this worker [env EVENTPRO_DATA_DIR]."),
    ] = None,
    broker_url: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap, kafka://host:port [env EVENTPRO_BROKER_URL]."),
    ] = None,
) -> None:
    """Run one Faust worker (agents, tables, HTTP API) against EVENTPRO_BROKER_URL.

    Several workers on one machine need only distinct --web-port and --data-dir.
    """
    from eventpro.worker import run_worker

    run_worker(_settings(web_port=web_port, data_dir=data_dir, broker_url=broker_url))


@app.command()
def dev(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Broker and worker state.")] = Path(
        "eventpro-data"
    ),
    web_port: Annotated[int, typer.Option(help="HTTP port of the first worker.")] = 6066,
    broker_port: Annotated[int, typer.Option(help="Port of the embedded broker.")] = 9092,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Worker processes.")] = 1,
    demo_event: Annotated[
        bool, typer.Option(help="Create the demo event (event_id 'demo', 1,000 seats).")
    ] = True,
) -> None:
    """Embedded broker + worker(s) + web on this machine; prints the URLs when ready.

    Ctrl-C stops everything. State stays in --data-dir, so a restart resumes where it stopped.
    """
    from eventpro.devenv import run_dev

    run_dev(
        data_dir=data_dir,
        web_port=web_port,
        broker_port=broker_port,
        workers=workers,
        demo_event=demo_event,
    )


events_app = typer.Typer(help="The events catalog.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("create")
def events_create(
    name: Annotated[str, typer.Option(help="Event name.")],
    capacity: Annotated[int, typer.Option(min=1, help="Seats on sale.")],
    price_cents: Annotated[int, typer.Option(min=0, help="Price of one ticket in cents.")],
    max_per_user: Annotated[
        int | None, typer.Option(min=1, help="Tickets one user may buy [settings default].")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option(help="Id to use (default: a new UUID); same id + spec is a no-op.")
    ] = None,
    broker_url: Annotated[
        str | None, typer.Option(help="Kafka bootstrap [env EVENTPRO_BROKER_URL].")
    ] = None,
) -> None:
    """Create an event by producing EventCreated to Kafka (the inventory owner applies it)."""
    import asyncio

    from eventpro.client import TicketClient
    from eventpro.exceptions import EventProError

    settings = _settings(broker_url=broker_url)

    async def create() -> str:
        async with TicketClient(
            settings.broker_url, topic_prefix=settings.topic_prefix, source="eventpro-cli"
        ) as client:
            return await client.create_event(
                name,
                capacity,
                price_cents,
                max_per_user=max_per_user or settings.default_max_per_user,
                event_id=event_id,
            )

    try:
        created = asyncio.run(create())
    except EventProError as exc:
        raise typer.BadParameter(str(exc)) from exc
    except Exception as exc:  # aiokafka raises several types when the broker is unreachable
        typer.echo(f"could not reach Kafka at {settings.broker_url}: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(created)


schemas_app = typer.Typer(help="Event schemas.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="Where to write the JSON Schema files.")],
) -> None:
    """Write the JSON Schema of every event (one file per type and version)."""
    from eventpro.schemas import export_json_schemas

    for path in export_json_schemas(directory):
        typer.echo(str(path))


def main() -> None:
    """Console-script entry point."""
    app()
