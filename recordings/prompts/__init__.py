"""The standard prompts (catalogue.toml), their bundled Mandarin audio (zh/) and the library."""
from .library import Prompt, PromptError, PromptLibrary, load_catalogue

__all__ = ["Prompt", "PromptError", "PromptLibrary", "load_catalogue"]
