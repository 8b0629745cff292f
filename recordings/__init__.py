"""Recording writer, prompt library, retention, playback/export of recordings."""
