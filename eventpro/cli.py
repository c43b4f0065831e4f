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
    rich_markup_mode=None,
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
    from eventpro.security import aiokafka_security_kwargs

    settings = _settings(broker_url=broker_url)

    async def create() -> str:
        async with TicketClient(
            settings.broker_url,
            topic_prefix=settings.topic_prefix,
            source="eventpro-cli",
            client_options=aiokafka_security_kwargs(settings),
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


dlq_app = typer.Typer(help="The dead-letter topic: list and replay.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

_BrokerOpt = Annotated[
    str | None, typer.Option("--broker", help="Kafka bootstrap [env EVENTPRO_BROKER_URL].")
]
_TopicOpt = Annotated[
    str | None, typer.Option("--topic", help="Dead-letter topic [settings: <prefix>dlq].")
]
_ReasonOpt = Annotated[str | None, typer.Option(help="Only letters with this reason.")]
_AgentOpt = Annotated[str | None, typer.Option(help="Only letters from this agent.")]
_SourceOpt = Annotated[
    str | None, typer.Option("--source-topic", help="Only letters from this original topic.")
]
_CorrelationOpt = Annotated[
    str | None, typer.Option("--correlation-id", help="Only letters of this correlation id.")
]
_FromOpt = Annotated[int | None, typer.Option("--from-offset", help="First DLQ offset.")]
_ToOpt = Annotated[int | None, typer.Option("--to-offset", help="Last DLQ offset (inclusive).")]


def _dlq_target(broker: str | None, topic: str | None) -> tuple[str, str, dict[str, object]]:
    from eventpro.security import aiokafka_security_kwargs
    from eventpro.topics import DLQ

    settings = _settings(broker_url=broker)
    bootstrap = settings.broker_url.split("://", 1)[-1].replace(";", ",")
    return bootstrap, topic or settings.topic_name(DLQ), aiokafka_security_kwargs(settings)


@dlq_app.command("list")
def dlq_list(
    broker: _BrokerOpt = None,
    topic: _TopicOpt = None,
    reason: _ReasonOpt = None,
    agent: _AgentOpt = None,
    source_topic: _SourceOpt = None,
    correlation_id: _CorrelationOpt = None,
    from_offset: _FromOpt = None,
    to_offset: _ToOpt = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List dead letters: offset, reason, agent, attempts, origin, correlation id, error."""
    import asyncio

    import orjson

    from eventpro.dlq import DeadLetterFilter, DlqError, list_dead_letters

    bootstrap, dlq_topic, options = _dlq_target(broker, topic)
    filters = DeadLetterFilter(reason, agent, source_topic, correlation_id, from_offset, to_offset)
    try:
        entries = asyncio.run(
            list_dead_letters(bootstrap, filters, topic=dlq_topic, client_options=options)
        )
    except DlqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for entry in entries:
        if json_lines:
            line = {"partition": entry.partition, "offset": entry.offset}
            line |= entry.letter.model_dump(mode="json", exclude={"original_b64", "key_b64"})
            typer.echo(orjson.dumps(line).decode())
        else:
            typer.echo(entry.summary())
    if not json_lines:
        typer.echo(f"{len(entries)} dead letter(s) in {dlq_topic}", err=True)


@dlq_app.command("replay")
def dlq_replay(
    broker: _BrokerOpt = None,
    topic: _TopicOpt = None,
    reason: _ReasonOpt = None,
    agent: _AgentOpt = None,
    source_topic: _SourceOpt = None,
    correlation_id: _CorrelationOpt = None,
    from_offset: _FromOpt = None,
    to_offset: _ToOpt = None,
    dry_run: Annotated[bool, typer.Option(help="Show what would be replayed only.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Produce the matching dead letters' original records to their original topics again."""
    import asyncio

    from eventpro.dlq import DeadLetterFilter, DlqError, replay_dead_letters

    bootstrap, dlq_topic, options = _dlq_target(broker, topic)
    filters = DeadLetterFilter(reason, agent, source_topic, correlation_id, from_offset, to_offset)
    try:
        report = asyncio.run(
            replay_dead_letters(
                bootstrap,
                filters,
                topic=dlq_topic,
                progress=progress,
                dry_run=dry_run,
                client_options=options,
            )
        )
    except DlqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    verb = "would replay" if dry_run else "replayed"
    by_topic = ", ".join(f"{t}: {n}" for t, n in sorted(report.by_topic.items())) or "nothing"
    typer.echo(f"{verb} {report.replayed} record(s) ({by_topic})")


@app.command()
def chaos(
    requests: Annotated[int, typer.Option(min=5, help="Distinct ticket requests.")] = 2_000,
    events: Annotated[int, typer.Option(min=1, help="Events on sale.")] = 8,
    workers: Annotated[
        int, typer.Option(min=1, max=16, help="Workers at the start (one more joins).")
    ] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the load and the faults.")] = 1,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of every topic.")] = 4,
    capacity: Annotated[
        int, typer.Option(min=0, help="Seats per event (0: 70% of the seats asked for).")
    ] = 0,
    duplicate_rate: Annotated[
        float, typer.Option(help="Share of requests and saga records delivered twice.")
    ] = 0.1,
    faults: Annotated[
        str,
        typer.Option(
            help="Comma-separated, in order: kill-worker, join-worker, kill-broker, duplicates."
        ),
    ] = "kill-worker,join-worker,kill-broker,duplicates",
    hold_ttl: Annotated[float, typer.Option(help="Hold TTL of the workers in seconds.")] = 8.0,
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every request to finish.")
    ] = 300.0,
    heal: Annotated[
        bool,
        typer.Option(
            help="SIGKILL+restart workers that hang in a rebalance after the broker restart."
        ),
    ] = True,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Where processes keep data and logs (default: a temp dir)."
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="Also write the report as JSON here.")
    ] = None,
    worker_log_level: Annotated[
        str, typer.Option(help="Log level of the workers (their logs go to the data dir).")
    ] = "WARNING",
) -> None:
    """Run an on-sale under SIGKILLs, a rebalance, a broker restart and duplicate deliveries.

    Starts its own broker and workers, checks DESIGN.md's invariants from the topics and the
    API, prints the report. Exits 1 when the load did not drain or an invariant failed.
    """
    import asyncio
    import tempfile

    from eventpro.chaos import ChaosError, ChaosSpec, run_chaos
    from eventpro.logconfig import configure_logging

    configure_logging("WARNING")
    try:
        spec = ChaosSpec(
            requests=requests,
            events=events,
            workers=workers,
            seed=seed,
            partitions=partitions,
            capacity=capacity,
            duplicate_rate=duplicate_rate,
            faults=tuple(f.strip() for f in faults.split(",") if f.strip()),  # type: ignore[misc]
            hold_ttl_seconds=hold_ttl,
            drain_timeout=drain_timeout,
            heal_stuck_workers=heal,
            worker_log_level=worker_log_level.upper(),
        ).validate()
    except ChaosError as exc:
        raise typer.BadParameter(str(exc)) from exc

    def say(text: str) -> None:
        typer.echo(text, err=True)

    with tempfile.TemporaryDirectory(prefix="eventpro-chaos-") as tmp:
        base = data_dir or Path(tmp)
        try:
            report = asyncio.run(run_chaos(spec, base, say=say))
        except ChaosError as exc:
            typer.echo(f"chaos: {exc} (logs in {base})", err=True)
            raise typer.Exit(2) from exc
    typer.echo(report.render_text())
    if json_out is not None:
        report.write_json(json_out)
    if not report.ok:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app()


@app.command()
def loadgen(
    users: Annotated[int, typer.Option(help="Simulated buyers, one request each.")] = 50_000,
    events: Annotated[int, typer.Option(help="Events on sale (each user picks one).")] = 10,
    capacity: Annotated[int, typer.Option(help="Seats of each event.")] = 2_000,
    price_cents: Annotated[int, typer.Option(help="Ticket price in cents.")] = 5_000,
    max_per_user: Annotated[int, typer.Option(help="Per-user ticket limit of the events.")] = 8,
    quantity_mix: Annotated[
        str, typer.Option(help="Tickets per request as QUANTITY:WEIGHT,... (e.g. 1:50,2:30,4:20).")
    ] = "1:50,2:30,4:20",
    duplicate_rate: Annotated[
        float, typer.Option(help="Share of requests resubmitted with the same request_id.")
    ] = 0.05,
    resubmit_delay: Annotated[
        float, typer.Option(help="A resubmission follows its original within this many seconds.")
    ] = 1.0,
    profile: Annotated[
        str, typer.Option(help="Arrivals: all (at once), ramp (up to --rate), rate (constant).")
    ] = "all",
    rate: Annotated[
        float, typer.Option(help="Requests/s of --profile rate; peak of ramp.")
    ] = 5_000,
    ramp_seconds: Annotated[float, typer.Option(help="Length of the ramp to --rate.")] = 10.0,
    transport: Annotated[
        str, typer.Option(help="kafka (produce like an external app) or http (the API).")
    ] = "kafka",
    api_url: Annotated[
        str | None,
        typer.Option(help="API base URL for --transport http, e.g. http://127.0.0.1:6066."),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="HTTP requests in flight.")] = 200,
    wait_for: Annotated[
        str, typer.Option(help="decided (reserved/rejected) or final (confirmed/released).")
    ] = "decided",
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for outcomes after sending.")
    ] = 120,
    seed: Annotated[int, typer.Option(help="Random seed of the plan (reproducible runs).")] = 1,
    run_id: Annotated[
        str | None, typer.Option(help="Names this run's events and requests (default: random).")
    ] = None,
    broker_url: Annotated[
        str | None, typer.Option(help="Kafka bootstrap [env EVENTPRO_BROKER_URL].")
    ] = None,
    topic_prefix: Annotated[
        str | None, typer.Option(help="Topic prefix of the deployment [env EVENTPRO_TOPIC_PREFIX].")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="Also write the report as JSON here.")
    ] = None,
    progress: Annotated[
        bool | None, typer.Option(help="Progress bars (default: only on a terminal).")
    ] = None,
) -> None:
    """Simulate an on-sale rush and report outcomes, seats, latency and the invariants.

    Exits 1 when outcomes are missing at --timeout or an invariant is violated.
    """
    import asyncio

    from eventpro.loadgen import LoadgenError, LoadSpec, QuantityMix, run_loadgen

    settings = _settings(broker_url=broker_url, topic_prefix=topic_prefix)
    try:
        spec = LoadSpec(
            users=users,
            events=events,
            capacity=capacity,
            price_cents=price_cents,
            max_per_user=max_per_user,
            quantity_mix=QuantityMix.parse(quantity_mix),
            duplicate_rate=duplicate_rate,
            resubmit_delay=resubmit_delay,
            profile=profile,  # type: ignore[arg-type]
            rate=rate,
            ramp_seconds=ramp_seconds,
            transport=transport,  # type: ignore[arg-type]
            concurrency=concurrency,
            wait_for=wait_for,  # type: ignore[arg-type]
            timeout=timeout,
            seed=seed,
            **({"run_id": run_id} if run_id is not None else {}),
        ).validate()
    except LoadgenError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        report = asyncio.run(
            run_loadgen(
                spec,
                broker_url=settings.broker_url,
                topic_prefix=settings.topic_prefix,
                api_url=api_url,
                progress=progress,
            )
        )
    except LoadgenError as exc:
        typer.echo(f"loadgen: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(report.render_text())
    if json_out is not None:
        report.write_json(json_out)
    if not report.ok:
        raise typer.Exit(1)
