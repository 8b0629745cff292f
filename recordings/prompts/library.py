"""The prompt library: turns a prompt name from catalogue.toml into 8 kHz int16 audio.

A prompt is played whole from the site's prompts folder when it has `<name>.wav` there (any
rate and format `recordings.wavio` reads); otherwise it is assembled from the bundled pieces:
the literal parts of its text (`zh/<name>.<k>.wav`) and its placeholders, `{company}` (the
site's company recording, or the bundled default name), `{agent_no}` (spoken digits) and
`{title}`.  Assembled prompts are cached; the library is read-only after construction.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..wavio import WavError, load_mono_8k

HERE = Path(__file__).resolve().parent
CATALOGUE = HERE / "catalogue.toml"
_PLACEHOLDER = re.compile(r"\{(company|agent_no|title)\}")
_GAP = np.zeros(int(0.12 * 8000), dtype=np.int16)  # around an inserted name or number
BEEP = (0.25 * 32767 * np.sin(2 * np.pi * 1000 * np.arange(3200) / 8000)).astype(np.int16)  # 400 ms, 1 kHz
DIGIT_NAMES = {**{str(d): f"digit_{d}" for d in range(10)}, "*": "digit_star", "#": "digit_hash"}


class PromptError(ValueError):
    """A prompt that cannot be played; the message names the prompt and the file."""


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str
    pcm: np.ndarray

    @property
    def ms(self) -> int:
        return len(self.pcm) * 1000 // 8000


def load_catalogue() -> dict:
    return tomllib.loads(CATALOGUE.read_text(encoding="utf-8"))


class PromptLibrary:
    def __init__(self, *, company: str | None = None, agent_no: str = "1", title: str | None = None,
                 site_dir: str | Path | None = None, company_audio: str | Path | None = None,
                 title_audio: str | Path | None = None, language: str = "zh"):
        catalogue = load_catalogue()
        self.texts: dict[str, str] = catalogue["prompts"]
        defaults = catalogue["defaults"]
        self.company = company or defaults["company"]
        self.title = title or defaults["title"]
        self.agent_no = agent_no
        self.bundled = HERE / language
        self.site_dir = Path(site_dir) if site_dir else None
        self._company_audio = Path(company_audio) if company_audio else None
        self._title_audio = Path(title_audio) if title_audio else None
        self._defaults = defaults
        self._cache: dict[str, Prompt] = {}

    # --- checks at start-up -----------------------------------------------------------------

    def check(self) -> None:
        """Render every prompt once; raise PromptError naming the first that cannot be played."""
        if self.company != self._defaults["company"] and self._company_audio is None:
            raise PromptError(
                f"desk.company is {self.company!r} but desk.company_audio is not set: record the company "
                f"name (or make it with recordings/prompts/generate.py --text ... --to company.wav) and set "
                f"desk.company_audio to that file")
        if not self.agent_no.isdigit():
            raise PromptError(f"desk.agent_no must be digits, got {self.agent_no!r}")
        for name in self.texts:
            self.render(name)

    # --- rendering ----------------------------------------------------------------------------

    def render(self, name: str, digits: str = "") -> Prompt:
        """The prompt `name`; `digits` appends a number read back digit by digit (R11)."""
        if name == "beep":
            return Prompt("beep", "(beep)", BEEP)
        if name not in self.texts:
            raise PromptError(f"unknown prompt {name!r}")
        prompt = self._cache.get(name)
        if prompt is None:
            prompt = self._cache[name] = Prompt(name, self._text(name), self._assemble(name))
        if digits:
            return Prompt(name, f"{prompt.text} {digits}", np.concatenate([prompt.pcm, _GAP, self.digits(digits)]))
        return prompt

    def digits(self, number: str) -> np.ndarray:
        parts = []
        for char in number:
            if char not in DIGIT_NAMES:
                raise PromptError(f"cannot speak {char!r} in {number!r}")
            parts.append(self._piece(DIGIT_NAMES[char]))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def _text(self, name: str) -> str:
        return (self.texts[name].replace("{company}", self.company).replace("{agent_no}", self.agent_no)
                .replace("{title}", self.title))

    def _assemble(self, name: str) -> np.ndarray:
        if self.site_dir is not None and (self.site_dir / f"{name}.wav").exists():
            return self._load(self.site_dir / f"{name}.wav")
        text = self.texts[name]
        if not _PLACEHOLDER.search(text):
            return self._piece(name)
        parts: list[np.ndarray] = []
        index = 0
        for literal in _PLACEHOLDER.split(text):
            if literal == "company":
                parts += [_GAP, self._company(), _GAP]
            elif literal == "agent_no":
                parts += [_GAP, self.digits(self.agent_no), _GAP]
            elif literal == "title":
                parts += [self._title(), _GAP]
            elif literal:
                index += 1
                parts.append(self._piece(f"{name}.{index}"))
        return np.concatenate(parts)

    def _company(self) -> np.ndarray:
        return self._load(self._company_audio) if self._company_audio else self._piece("company")

    def _title(self) -> np.ndarray:
        return self._load(self._title_audio) if self._title_audio else self._piece("title")

    def _piece(self, stem: str) -> np.ndarray:
        if self.site_dir is not None and (self.site_dir / f"{stem}.wav").exists():
            return self._load(self.site_dir / f"{stem}.wav")
        return self._load(self.bundled / f"{stem}.wav")

    @staticmethod
    def _load(path: Path) -> np.ndarray:
        try:
            return load_mono_8k(path)
        except FileNotFoundError:
            raise PromptError(f"prompt file missing: {path}") from None
        except WavError as error:
            raise PromptError(str(error)) from None
