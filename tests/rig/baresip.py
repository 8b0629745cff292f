"""baresip 1.0 headless as an independent second SIP client.

A config dir is generated in the caller's tmp dir: ``sip_listen`` on its own 127.0.0.x:port,
``net_interface 127.0.0.1`` (required: without it baresip puts the machine's non-loopback
address in the SDP, and ``lo`` is rejected; the SIP socket may still be any 127.0.0.x, but
RTP binds 127.0.0.1 and the SDP says 127.0.0.1), ``aufile`` as the audio source (a WAV,
8 kHz mono 16-bit), ``sndfile`` dumping both directions to WAV in ``dump_dir``
(``dump-<time>-enc.wav`` = what baresip sent, ``-dec.wav`` = what it received), and one
account registering to the registrar with digest auth (``auth_pass``), PCMU/PCMA only.

Modules used (all in /usr/lib/baresip/modules of Debian's baresip 1.0.0): g711, aufile,
sndfile, account, menu (``/dial`` etc.), uuid.  ``ausine`` is 48 kHz stereo only; not used.

``run(seconds, commands)`` runs ``baresip -f CFG -t SECONDS -e CMD...`` to its exit;
``dial(uri, seconds)`` is ``run(seconds, ["/dial uri"])``; ``start()``/``stop()`` keep it
running (e.g. with ``answermode="auto"`` to take calls).  baresip needs a pipe on stdin
(it cannot epoll /dev/null), which ``ManagedProcess(stdin_pipe=True)`` gives it.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.rig.ports import free_endpoint, free_rtp_range
from tests.rig.procs import ManagedProcess

BARESIP = shutil.which("baresip") or "baresip"
# Debian's package path; override with BARESIP_MODULE_PATH (the line is left out if neither exists)
MODULE_PATH = Path(os.environ.get("BARESIP_MODULE_PATH", "/usr/lib/baresip/modules"))


@dataclass
class BaresipResult:
    """One baresip run: exit status, wall time, its log, and the WAV dumps it wrote."""

    returncode: int | None
    elapsed_s: float
    log: str
    dumps: list[Path] = field(default_factory=list)
    timed_out: bool = False

    @property
    def sent_wavs(self) -> list[Path]:
        """Dumps of what baresip encoded and sent (``*-enc.wav``)."""
        return [p for p in self.dumps if p.name.endswith("-enc.wav")]

    @property
    def received_wavs(self) -> list[Path]:
        """Dumps of what baresip received and decoded (``*-dec.wav``)."""
        return [p for p in self.dumps if p.name.endswith("-dec.wav")]

    @property
    def registered(self) -> bool:
        """True if the log shows a 200 OK to REGISTER ("... 200 OK (...) [1 binding]")."""
        return "200 OK" in self.log and "binding" in self.log

    @property
    def established(self) -> bool:
        return "Call established" in self.log


class Baresip:
    """A baresip instance with its own config dir under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        registrar: str | None,
        user: str = "2001",
        password: str | None = "secret",
        sip_host: str | None = None,
        sip_port: int | None = None,
        audio_wav: Path | None = None,
        codecs: tuple[str, ...] = ("PCMU", "PCMA"),
        regint: int = 120,
        answermode: str | None = None,
        net_interface: str = "127.0.0.1",
        rtp_ports: tuple[int, int] | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.config_dir = self.workdir / "config"
        self.dump_dir = self.workdir / "dump"
        self.log_path = self.workdir / "baresip.log"
        for d in (self.config_dir, self.dump_dir):
            d.mkdir(parents=True, exist_ok=True)
        if sip_host is None or sip_port is None:
            ep = free_endpoint(sip_host)
            sip_host, sip_port = ep.host, (sip_port or ep.port)
        self.sip_host: str = sip_host
        self.sip_port: int = sip_port
        self.registrar = registrar
        self.user = user
        self.password = password
        self.audio_wav = Path(audio_wav).resolve() if audio_wav else None
        self.codecs = codecs
        self.regint = regint
        self.answermode = answermode
        self.net_interface = net_interface
        self.rtp_ports = rtp_ports or free_rtp_range(net_interface, 10)
        self.proc: ManagedProcess | None = None
        self.write_config()

    @property
    def aor(self) -> str:
        """The account's address of record (``sip:user@registrar``)."""
        return f"sip:{self.user}@{self.registrar or self.sip_host}"

    def write_config(self) -> None:
        """(Re)write ``config`` and ``accounts`` in the config dir."""
        src = f"aufile,{self.audio_wav}" if self.audio_wav else "aufile,/dev/null"
        lines = [
            "poll_method\t\tepoll",
            f"sip_listen\t\t{self.sip_host}:{self.sip_port}",
            "call_local_timeout\t120",
            "call_max_calls\t\t4",
            "audio_player\t\taufile,/dev/null",
            f"audio_source\t\t{src}",
            "audio_alert\t\taufile,/dev/null",
            "ausrc_srate\t\t8000",
            "ausrc_channels\t\t1",
            "auplay_srate\t\t8000",
            "auplay_channels\t\t1",
            "audio_level\t\tno",
            f"rtp_ports\t\t{self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "rtcp_mux\t\tno",
            "jitter_buffer_delay\t5-10",
            "rtp_stats\t\tyes",
            *([f"module_path\t\t{MODULE_PATH}"] if MODULE_PATH.is_dir() else []),
            "module\t\t\tg711.so",
            "module\t\t\taufile.so",
            "module\t\t\tsndfile.so",
            "module_tmp\t\tuuid.so",
            "module_tmp\t\taccount.so",
            "module_app\t\tmenu.so",
            f"snd_path\t\t{self.dump_dir}",
            f"net_interface\t\t{self.net_interface}",
            "dns_server\t\t127.0.0.1:53",
        ]
        (self.config_dir / "config").write_text("\n".join(lines) + "\n")
        params = [f"audio_codecs={','.join(self.codecs)}"]
        if self.registrar:
            params.append(f"regint={self.regint}")
            if self.password is not None:
                params.append(f"auth_pass={self.password}")
        else:
            params.append("regint=0")
        if self.answermode:
            params.append(f"answermode={self.answermode}")
        host = self.registrar or f"{self.sip_host}:{self.sip_port}"
        (self.config_dir / "accounts").write_text(f"<sip:{self.user}@{host}>;" + ";".join(params) + "\n")

    def _argv(self, seconds: float | None, commands: list[str]) -> list[str]:
        argv = [BARESIP, "-f", str(self.config_dir)]
        if seconds is not None:
            argv += ["-t", str(max(1, int(round(seconds))))]
        for c in commands:
            argv += ["-e", c]
        return argv

    def start(self, commands: list[str] | None = None, seconds: float | None = None) -> "Baresip":
        """Start in the background (optionally quitting by itself after ``seconds``)."""
        if self.proc is not None and self.proc.running():
            raise RuntimeError("baresip already running")
        self.proc = ManagedProcess(self._argv(seconds, commands or []), cwd=self.workdir, log_path=self.log_path,
                                   name="baresip", stdin_pipe=True)
        self._t0 = time.monotonic()
        self._log_offset = len(self.proc.log_text())
        self.proc.start()
        return self

    def wait_registered(self, timeout_s: float = 5.0) -> None:
        """Wait until the log shows the REGISTER's 200 OK."""
        assert self.proc is not None
        self.proc.wait_for_log(r"200 OK .*binding", timeout_s, since=self._log_offset)

    def stop(self, timeout_s: float = 5.0) -> BaresipResult:
        """SIGTERM (baresip de-registers and exits), SIGKILL after ``timeout_s``; the result."""
        assert self.proc is not None
        self.proc.stop(timeout_s)
        return self._result(False)

    def wait(self, timeout_s: float) -> BaresipResult:
        """Wait for a self-terminating run (``-t``); stops it on timeout (``timed_out=True``)."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout_s)
            timed_out = False
        except TimeoutError:
            self.proc.stop(3.0)
            timed_out = True
        return self._result(timed_out)

    def _result(self, timed_out: bool) -> BaresipResult:
        assert self.proc is not None
        return BaresipResult(
            returncode=self.proc.returncode,
            elapsed_s=time.monotonic() - self._t0,
            log=self.proc.log_text()[self._log_offset:],
            dumps=sorted(self.dump_dir.glob("dump-*.wav")),
            timed_out=timed_out,
        )

    def run(self, seconds: float, commands: list[str] | None = None, *, grace_s: float = 10.0) -> BaresipResult:
        """Run with ``-t seconds`` and the ``-e`` commands until baresip exits (bounded)."""
        self.start(commands, seconds)
        return self.wait(seconds + grace_s)

    def dial(self, uri: str, seconds: float, *, grace_s: float = 10.0) -> BaresipResult:
        """Call ``uri``; baresip hangs up and exits after ``seconds`` (counted from its start)."""
        return self.run(seconds, [f"/dial {uri}"], grace_s=grace_s)

    def register(self, seconds: float = 2.0) -> BaresipResult:
        """Register, stay ``seconds``, de-register and exit."""
        return self.run(seconds)
