"""Assembling a running agent from a Config: register, recordings, prompts, SIP, media.

Start-up order: schema up to date (Alembic) -> register writer (replays its journal) -> close
the rows a crash left open as `interrupted` (R18) -> prompts checked -> recordings -> agent.
Shut-down is the reverse, so every call's row is completed before the process exits.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Callable

from db import callbacks
from db import register as register_service
from db import schema
from db.engine import make_engine, session_factory
from db.ops import CloseCall
from db.writer import RegisterWriter
from recordings.prompts import PromptLibrary
from recordings.writer import RecordingWriter, repair

from .agent import Agent
from .config import Config
from .dialer import Dialer

log = logging.getLogger("frontdesk.runtime")


def prompt_library(config: Config) -> PromptLibrary:
    d = config.desk
    return PromptLibrary(company=d.company or None, agent_no=d.agent_no, title=d.title or None,
                         site_dir=config.prompts.dir or None, company_audio=d.company_audio or None,
                         title_audio=d.title_audio or None)


def recover_interrupted(config: Config, writer: RegisterWriter) -> int:
    """Close the calls a crash of this agent left open: outcome `interrupted`, recording kept."""
    engine = make_engine(config.storage.db)
    try:
        with session_factory(engine)() as session:
            calls = register_service.unfinished_calls(session, config.desk.name)
            for call in calls:
                events = register_service.call_events(session, call)
                ended_at = events[-1].at if events else call.started_at
                fields = {"status": "ended", "outcome": "interrupted", "hung_up_first": "system",
                          "end_reason": "crash", "ended_at": ended_at}
                if call.answered_at is not None:
                    fields["talk_ms"] = max(0, round((ended_at - call.answered_at).total_seconds() * 1000))
                if call.recording and Path(call.recording).exists():
                    try:
                        info = repair(call.recording)
                        fields.update(recording_sha256=info.sha256, recording_ms=info.ms)
                    except OSError as error:
                        log.warning("recording %s of call %s not repaired: %s", call.recording, call.id, error)
                writer.submit(CloseCall(call.uid, fields))
                log.warning("call %s (%s) was cut by a crash: marked interrupted", call.id, call.caller)
            return len(calls)
    finally:
        engine.dispose()


@dataclass
class Runtime:
    config: Config
    writer: RegisterWriter
    recorder: RecordingWriter
    agent: Agent
    dialer: Dialer | None = None

    @classmethod
    def build(cls, config: Config, on_status: Callable[[str], None] | None = None,
              dial: bool | None = None, dial_once: bool = False) -> "Runtime":
        url = config.storage.db
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        schema.upgrade(url)
        prompts = prompt_library(config)
        prompts.check()
        config.journal_path.parent.mkdir(parents=True, exist_ok=True)
        writer = RegisterWriter(url, config.journal_path)
        callbacks.register_hooks(writer, config.callbacks.rules(config.tz))  # R12-R14, same transaction
        recorder = RecordingWriter()
        agent = Agent(config, register=writer, prompts=prompts, recorder=recorder, on_status=on_status)
        dialer = None
        if config.callbacks.dial if dial is None else dial:  # R13: the agent calls back by itself
            dialer = Dialer(config, place_call=agent.place_callback, free_lines=agent.free_lines,
                            flush_register=writer.flush, once=dial_once)
            agent.dialer = dialer
        return cls(config, writer, recorder, agent, dialer)

    def start(self) -> None:
        self.writer.start()
        self.writer.flush(10.0)  # the journal's replay first, so recovery sees every row
        recovered = recover_interrupted(self.config, self.writer)
        if recovered:
            log.warning("%d call(s) left by a crash were marked interrupted", recovered)
        self.recorder.start()
        Path(self.config.storage.recordings).mkdir(parents=True, exist_ok=True)
        self.agent.start()
        if self.dialer is not None:
            self.dialer.start()

    def stop(self) -> None:
        self.agent.stop()  # active callbacks end here and report their attempts
        if self.dialer is not None:
            self.dialer.stop()
        self.recorder.stop()  # closes open recordings; their rows are closed from its callbacks
        self.writer.stop(10.0)
