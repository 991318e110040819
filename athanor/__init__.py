"""athanor: an autonomous-lab orchestrator for materials research (shell, settings, domain models)."""

__version__ = "0.1.0"
