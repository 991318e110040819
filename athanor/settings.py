"""Settings read from the environment, with embedded defaults that need no key and no hardware.

Where runs, ledgers, the literature store and Ray's folder live is ``$ATHANOR_HOME`` (default
``./.athanor``): see :func:`athanor_home`.

Environment variables:
    ATHANOR_LLM: LLM back end, ``offline`` (default), ``openai`` or ``mock``.
    ATHANOR_LLM_MODEL: Model name for the ``openai`` back end.
    ATHANOR_LLM_BASE_URL: Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, ...).
    ATHANOR_LLM_API_KEY: Key for that endpoint (falls back to ``OPENAI_API_KEY``).
    RAY_ADDRESS: Join this Ray cluster instead of starting a local one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "athanor_home"]


def athanor_home() -> Path:
    """The folder holding runs and the literature store: ``$ATHANOR_HOME``, else ``./.athanor``."""
    return Path(os.environ.get("ATHANOR_HOME") or ".athanor").expanduser().absolute()


@dataclass(frozen=True)
class Settings:
    """Process-wide settings.

    Attributes:
        llm: LLM back end name.
        llm_model: Model name (``openai`` back end).
        llm_base_url: Endpoint URL (``openai`` back end); None means OpenAI's own.
        llm_api_key: Endpoint key; never written to a run record.
        ray_address: Ray cluster to join; None starts a local one.
    """

    llm: str = "offline"
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    ray_address: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from the environment variables above."""
        env = os.environ
        return cls(
            llm=env.get("ATHANOR_LLM") or "offline",
            llm_model=env.get("ATHANOR_LLM_MODEL") or None,
            llm_base_url=env.get("ATHANOR_LLM_BASE_URL") or None,
            llm_api_key=env.get("ATHANOR_LLM_API_KEY") or env.get("OPENAI_API_KEY") or None,
            ray_address=env.get("RAY_ADDRESS") or None,
        )
