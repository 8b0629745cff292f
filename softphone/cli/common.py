"""Options and helpers every command shares: where the configuration and the register are."""
from __future__ import annotations

import signal
import threading

import click

from .. import config as config_module
from ..config import Config, ConfigError


def config_options(command):
    """--config FILE and --db URL (else $FRONTDESK_CONFIG / $FRONTDESK_DB, else the defaults)."""
    command = click.option("--db", metavar="URL", help="The register: sqlite:///FILE or postgresql+psycopg://... "
                           "[$FRONTDESK_DB, config storage.db, sqlite:///var/frontdesk.db]")(command)
    command = click.option("--config", "config_file", metavar="FILE", type=click.Path(dir_okay=False),
                           help="TOML configuration file. [$FRONTDESK_CONFIG]")(command)
    return command


def load_config(config_file: str | None, db: str | None, overrides: dict | None = None) -> Config:
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    if db:
        overrides.setdefault("storage", {})["db"] = db
    try:
        return config_module.load(config_file, overrides)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def session_scope(config: Config):
    """A read session on the register (migrating it first, so a new file just works)."""
    from db import schema
    from db.engine import make_engine, session_factory
    from pathlib import Path

    url = config.storage.db
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        schema.upgrade(url)
        engine = make_engine(url)
    except Exception as error:  # an unreachable or broken database is the user's to fix
        raise click.ClickException(f"cannot open the register {url}: {error}") from None
    return engine, session_factory(engine)




def ctrl_c_ends() -> None:
    """Make SIGINT raise KeyboardInterrupt even when the process started with it ignored.

    A process started from a non-interactive shell's background job (`cmd &` in a script, CI)
    inherits SIGINT as SIG_IGN, and Python then leaves it ignored: `kill -INT` would not end
    `frontdesk follow` or `calls replay`, which end on Ctrl-C by design.
    """
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
