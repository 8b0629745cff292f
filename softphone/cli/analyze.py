"""`frontdesk analyze`: what the line detector hears in WAV files."""
from __future__ import annotations

import json

import click


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--channel", type=click.Choice(["caller", "agent"]), default="caller", show_default=True,
              help="Which side of a stereo call recording (caller = left).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
def analyze(files, channel, as_json):
    """Run the line detector over WAV files (any rate; PCM, float, mu-law or A-law).

    Per file: one character per 20 ms frame (s speech, n noise, . silence), the line state
    (speech, quiet, noisy, silent) and the speech onsets in seconds.
    """
    from recordings.wavio import WavError

    from ..analysis import analyze_file

    for path in files:
        try:
            result = analyze_file(path, channel=0 if channel == "caller" else 1)
        except WavError as error:
            raise click.ClickException(str(error)) from None
        if as_json:
            click.echo(json.dumps(result, ensure_ascii=False))
        else:
            onsets = ", ".join(f"{t:.2f}" for t in result["onsets"]) or "none"
            click.echo(f"{path}: {result['line']} (level {result['active_level_dbfs']} dBFS, onsets {onsets} s)")
            click.echo(f"  {result['frames']}")
