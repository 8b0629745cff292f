"""Generate docs/call-states.md (a Mermaid state diagram) from callflows.flow.TRANSITIONS."""
from __future__ import annotations

import sys

from .flow import TRANSITIONS, State


def mermaid() -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {State.NEW.value}"]
    for (state, kind), (target, handler) in sorted(TRANSITIONS.items(), key=lambda item: (item[0][0].value, item[0][1])):
        lines.append(f"    {state.value} --> {target.value}: {kind}")
    lines += [f"    {State.MISSED.value} --> [*]", f"    {State.ENDED.value} --> [*]"]
    return "\n".join(lines)


def document() -> str:
    rows = "\n".join(f"| {s.value} | `{k}` | {t.value} | `{h}` |"
                     for (s, k), (t, h) in sorted(TRANSITIONS.items(), key=lambda i: (i[0][0].value, i[0][1])))
    return (
        "# Call states\n\n"
        "Generated from `callflows/flow.py` by `python -m callflows.diagram > docs/call-states.md`;\n"
        "a test fails when this file and the table disagree.\n\n"
        f"```mermaid\n{mermaid()}\n```\n\n"
        "| from | event | to | handler |\n|---|---|---|---|\n" + rows + "\n"
    )


if __name__ == "__main__":
    sys.stdout.write(document())
