"""`frontdesk run`: the agent on the desk's line."""
from __future__ import annotations

import logging
import signal
import sys
import threading
import time

import click

from ..config import ConfigError
from .common import config_options, load_config


@click.command()
@config_options
@click.option("--sip", "listen", metavar="HOST:PORT", help="Address to listen on for SIP (UDP). [127.0.0.1:5060]")
@click.option("--registrar", metavar="HOST:PORT", help="Register with this PBX/registrar (digest auth).")
@click.option("--user", help="SIP user / extension. [frontdesk]")
@click.option("--password", help="Digest password for the registrar.")
@click.option("--recordings", metavar="DIR", help="Folder for call recordings. [var/recordings]")
@click.option("--answer-after-rings", type=int, help="Answer after this many rings (R1). [2]")
@click.option("--ring-cadence", metavar="ON,OFF", help="Ring cadence in ms. [1000,4000]")
@click.option("--answer-delay", type=int, metavar="MS", help="Fixed ring time in ms; overrides the ring count.")
@click.option("--log-level", default="INFO", show_default=True, help="How much the agent logs to stderr.",
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def run(config_file, db, listen, registrar, user, password, recordings, answer_after_rings, ring_cadence,
        answer_delay, log_level):
    """Run the agent: answer calls within the house rule, run the scripts, record, keep the register.

    Prints `ready sip=HOST:PORT db=URL` once it accepts calls; stops cleanly on Ctrl-C or SIGTERM
    (active calls get a BYE and their register rows are completed).
    """
    overrides = {
        "sip": {"listen": listen, "registrar": registrar, "user": user, "password": password},
        "storage": {"recordings": recordings},
        "answer": {"after_rings": answer_after_rings, "ring_cadence": ring_cadence, "delay_ms": answer_delay},
    }
    config = load_config(config_file, db, overrides)
    serve(config, log_level=log_level)


def serve(config, *, dial: bool | None = None, dial_once: bool = False, timeout_s: float | None = None,
          log_level: str = "INFO") -> None:
    """Start the agent from `config`, print `ready ...`, run until a signal (or the single
    callback of `dial_once` is recorded, or `timeout_s`), then stop cleanly."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from recordings.prompts import PromptError

    from ..runtime import Runtime  # heavy imports only when the agent runs

    try:
        runtime = Runtime.build(config, on_status=click.echo, dial=dial, dial_once=dial_once)
    except (ConfigError, PromptError) as error:
        raise click.ClickException(str(error)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        runtime.start()
    except OSError as error:
        raise click.ClickException(f"cannot start: {error} (is {config.sip.listen[0]}:{config.sip.listen[1]} "
                                   "free? use --sip HOST:PORT)") from None
    host, port = runtime.agent.sip.address
    click.echo(f"ready sip={host}:{port} db={config.storage.db}")
    sys.stdout.flush()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while not stop.wait(0.5):
            if dial_once and runtime.dialer is not None and runtime.dialer.finished.is_set():
                break
            if deadline is not None and time.monotonic() > deadline:
                break
    finally:
        click.echo("stopping")
        runtime.stop()
        click.echo("stopped")
