"""`frontdesk run`: the agent on the desk's line."""
from __future__ import annotations

import logging
import signal
import sys
import threading

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
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    overrides = {
        "sip": {"listen": listen, "registrar": registrar, "user": user, "password": password},
        "storage": {"recordings": recordings},
        "answer": {"after_rings": answer_after_rings, "ring_cadence": ring_cadence, "delay_ms": answer_delay},
    }
    config = load_config(config_file, db, overrides)
    from ..runtime import Runtime  # heavy imports only for this command
    from recordings.prompts import PromptError

    def status(line: str) -> None:
        click.echo(line)

    try:
        runtime = Runtime.build(config, on_status=status)
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
    try:
        while not stop.wait(0.5):
            pass
    finally:
        click.echo("stopping")
        runtime.stop()
        click.echo("stopped")
