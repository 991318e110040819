"""What the athanor command lines share: the typer application class, the version, common options.

Typer's help prints each option's Python type (``<bool>``, ``<str>``) where a command line names
what the option takes. Every command of a :class:`CommandLine` shows a flag bare
(``--literature / --no-literature``) and a value option with its metavar, or else with its name in
capitals (``--seed SEED``), as a command line's help usually reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

import athanor

__all__ = ["DISTRIBUTION", "CommandLine", "TimeScaleOption", "distribution_version"]

#: The distribution athanor is installed as.
DISTRIBUTION = "athanor-lab"

TimeScaleOption = Annotated[
    float | None,
    typer.Option(
        "--time-scale",
        metavar="FACTOR",
        help="Multiplier on simulated instrument durations (1: real time, 0: no waiting). Default:"
        " the lab file's time_scale, or 0.01 on the virtual lab. Serial and Opentrons instruments"
        " run in real time.",
    ),
]


def distribution_version() -> str:
    """The installed version of :data:`DISTRIBUTION`, or the source tree's, marked, when not installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return f"{athanor.__version__} (not installed)"


def _name_values(params: Iterable[Any]) -> None:
    """Give each option without a metavar one: none for a flag, its name in capitals for a value."""
    for param in params:
        if isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = "" if param.is_flag or param.count else (param.name or "value").upper()


class _Command(TyperCommand):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _name_values(self.params)

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        option = super().get_help_option(ctx)
        _name_values([option])
        return option


class _Group(TyperGroup):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _name_values(self.params)

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        option = super().get_help_option(ctx)
        _name_values([option])
        return option


class CommandLine(typer.Typer):
    """A typer application whose commands' help names what each option takes (see the module)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", _Group)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a command, as :meth:`typer.Typer.command` does, built to name its options."""
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)
