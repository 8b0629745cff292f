"""`make demo`: start the agent, place a few real calls at it with SIPp, print the register.

Three calls: a caller who talks after the greeting and hangs up, one who hangs up while it is
still ringing, and one who hangs up during the greeting.  Everything runs on loopback in a
temporary folder (or --workdir), on free 127.0.0.x ports; nothing is left running.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recordings.wavio import read_wav  # noqa: E402
from tests.agentproc import AgentProcess  # noqa: E402
from tests.rig.media import make_rtp_pcap  # noqa: E402
from tests.rig.ports import free_endpoint  # noqa: E402
from tests.rig.sipp import run_sipp  # noqa: E402

SPEECH = REPO / "tests" / "fixtures" / "corpus" / "dev" / "sp_clean_clean_0_en_allison.wav"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, help="keep the register and recordings here")
    parser.add_argument("--answer-delay-ms", type=int, default=2000,
                        help="ring time before the answer (the house default is 8000: after the second ring)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="frontdesk-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)

    # the caller says something after the greeting (about 6 s), then stays on the line a little
    speech = read_wav(SPEECH)[1][:, 0]
    audio = np.concatenate([np.zeros(8000 * 7, np.int16), speech, np.zeros(8000 * 4, np.int16)])
    pcap = make_rtp_pcap(audio, workdir / "caller.pcap").path

    endpoint = free_endpoint()
    agent = AgentProcess(workdir / "agent", listen=(endpoint.host, endpoint.port),
                         answer_delay_ms=args.answer_delay_ms)
    print(f"agent: python -m softphone run --config {agent.config_path}")
    agent.start()
    target = f"{endpoint.host}:{endpoint.port}"
    caller_ip = endpoint.host.rsplit(".", 1)[0] + ".250"
    try:
        print("call 1: the caller speaks after the greeting, then hangs up ...")
        run_sipp("uac_normal", target, pcap=pcap, duration_ms=24_000, timeout_s=60, workdir=workdir,
                 local_ip=caller_ip, name="talk")
        print("call 2: the caller hangs up while it rings ...")
        run_sipp("uac_cancel", target, duration_ms=args.answer_delay_ms // 2, timeout_s=30, workdir=workdir,
                 local_ip=caller_ip, name="cancel", scenario_vars={"FINAL_WAIT_MS": "5000"})
        print("call 3: the caller hangs up during the greeting ...")
        run_sipp("uac_normal", target, pcap=pcap, duration_ms=2500, timeout_s=30, workdir=workdir,
                 local_ip=caller_ip, name="abandon")
        agent.wait_calls(3, timeout=20)
    finally:
        agent.stop()
    db = ["--db", agent.db]
    frontdesk = [sys.executable, "-m", "softphone"]
    print("\n$ frontdesk calls list")
    subprocess.run(frontdesk + ["calls", "list", *db], check=False)
    first = agent.calls()[0]["id"]
    print(f"\n$ frontdesk calls show {first}")
    subprocess.run(frontdesk + ["calls", "show", str(first), *db], check=False)
    print("\n$ frontdesk callbacks list")
    subprocess.run(frontdesk + ["callbacks", "list", *db], check=False)
    print(f"\nregister: {agent.db}\nrecordings: {agent.workdir / 'recordings'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
