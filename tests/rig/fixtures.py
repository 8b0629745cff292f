"""pytest fixtures for the rig.  Import them into a conftest (or a test module):

    from tests.rig.fixtures import (  # noqa: F401
        baresip_factory, kamailio, kamailio_factory, rig_media, sip_peer, stock_agent_factory,
    )

Every fixture works in the test's own ``tmp_path`` (media in a session tmp dir), picks fresh
127.0.0.x addresses and ports, and stops what it started, by PID, at teardown.  Fixtures skip
the test (not fail it) when the binary they need is not installed.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.rig import media
from tests.rig.baresip import Baresip
from tests.rig.kamailio import Kamailio
from tests.rig.sipclient import SipPeer
from tests.rig.stock import StockAgent


def require(*binaries: str) -> None:
    """Fail the calling test unless every binary is on PATH (`make test` installs them).

    With FRONTDESK_ALLOW_SKIP=1 (a machine where they cannot be installed) it skips instead, so
    a missing peer never passes silently in CI.
    """
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        message = f"not installed: {', '.join(missing)} (run `make test`, or scripts/install-deps.sh test as root)"
        if os.environ.get("FRONTDESK_ALLOW_SKIP") == "1":
            pytest.skip(message)
        pytest.fail(message)


@dataclass(frozen=True)
class RigMedia:
    """Caller-side audio for the tests (all 8 kHz; pcaps are 20 ms G.711 RTP for SIPp)."""

    speech_wav: Path          # ~4 s English espeak-ng speech, 16-bit
    speech_pcmu: Path         # that speech as PCMU RTP
    speech_pcma: Path         # ... as PCMA RTP
    silence_pcmu: Path        # 4 s mu-law digital silence
    tone_m20_pcmu: Path       # 1004 Hz, -20 dBFS peak, 4 s
    tone_m40_pcmu: Path       # 1004 Hz, -40 dBFS peak, 4 s
    tone_m20_loss_pcmu: Path  # -20 dBFS tone, every 10th packet dropped
    speech_dtx_pcmu: Path     # speech with a 1 s gap at 1.5 s
    prompt_wav: Path          # 3 s 440 Hz at -10 dBFS: a stand-in prompt for bench/stock_agent.py


def build_media(d: Path) -> RigMedia:
    """Generate ``RigMedia`` in ``d`` (about 0.3 s)."""
    d.mkdir(parents=True, exist_ok=True)
    speech = media.speech_wav(d / "speech.wav", seconds=4.0)
    tone20 = media.write_wav(d / "tone_m20.wav", media.tone(1004, 4.0, -20.0))
    tone40 = media.write_wav(d / "tone_m40.wav", media.tone(1004, 4.0, -40.0))
    return RigMedia(
        speech_wav=speech,
        speech_pcmu=media.make_rtp_pcap(speech, d / "speech_pcmu.pcap").path,
        speech_pcma=media.make_rtp_pcap(speech, d / "speech_pcma.pcap", codec="PCMA").path,
        silence_pcmu=media.make_silence_pcap(4.0, d / "silence_pcmu.pcap").path,
        tone_m20_pcmu=media.make_rtp_pcap(tone20, d / "tone_m20_pcmu.pcap").path,
        tone_m40_pcmu=media.make_rtp_pcap(tone40, d / "tone_m40_pcmu.pcap").path,
        tone_m20_loss_pcmu=media.make_rtp_pcap(tone20, d / "tone_m20_loss.pcap", drop_every=10).path,
        speech_dtx_pcmu=media.make_rtp_pcap(speech, d / "speech_dtx.pcap", dtx_gap=(1.0, 1.5)).path,
        prompt_wav=media.write_wav(d / "prompt.wav", media.tone(440, 3.0, -10.0)),
    )


@pytest.fixture(scope="session")
def rig_media(tmp_path_factory: pytest.TempPathFactory) -> RigMedia:
    """Session-wide caller audio and RTP pcaps (needs espeak-ng and sox)."""
    require("espeak-ng", "sox")
    return build_media(tmp_path_factory.mktemp("rig_media"))


@pytest.fixture
def kamailio_factory(tmp_path: Path) -> Iterator[Callable[..., Kamailio]]:
    """``make(**Kamailio kwargs) -> started Kamailio``; all of them are stopped at teardown."""
    require("kamailio", "kamcmd")
    made: list[Kamailio] = []

    def make(**kw: Any) -> Kamailio:
        k = Kamailio(tmp_path / f"kamailio{len(made)}", **kw)
        made.append(k)
        return k.start()

    yield make
    for k in made:
        k.stop()


@pytest.fixture
def kamailio(kamailio_factory: Callable[..., Kamailio]) -> Kamailio:
    """A started Kamailio registrar/proxy with digest auth (password ``secret``) on a fresh address."""
    return kamailio_factory(password="secret")


@pytest.fixture
def stock_agent_factory(tmp_path: Path) -> Iterator[Callable[..., StockAgent]]:
    """``make(registrar=..., **StockAgent kwargs) -> started StockAgent`` (stock pyVoIP 1.6.8)."""
    made: list[StockAgent] = []

    def make(**kw: Any) -> StockAgent:
        settle = kw.pop("settle_s", 1.1)
        a = StockAgent(tmp_path / f"stock{len(made)}", **kw)
        made.append(a)
        return a.start(settle_s=settle)

    yield make
    for a in made:
        a.stop()


@pytest.fixture
def baresip_factory(tmp_path: Path) -> Iterator[Callable[..., Baresip]]:
    """``make(registrar=..., **Baresip kwargs) -> Baresip`` (not started); stopped at teardown."""
    require("baresip")
    made: list[Baresip] = []

    def make(**kw: Any) -> Baresip:
        b = Baresip(tmp_path / f"baresip{len(made)}", **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        if b.proc is not None and b.proc.running():
            b.stop()


@pytest.fixture
def sip_peer() -> Iterator[SipPeer]:
    """A raw UDP SIP peer on a fresh 127.0.0.x address."""
    peer = SipPeer()
    yield peer
    peer.close()
