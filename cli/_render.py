"""What the commands share: the settings, clear errors, and progress from steps drawn by Rich."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()


def err() -> Console:
    """The terminal's stderr (the libraries' stderr goes to the workspace log meanwhile)."""
    from cadence.cli._logs import terminal_stderr

    return Console(file=terminal_stderr())


def fail(message: object, code: int = 2) -> NoReturn:
    """Prints the message (no markup: it may hold paths with brackets) and exits."""
    err().print(str(message), style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=code)


@contextlib.contextmanager
def progress(title: str) -> Iterator:
    """A `Report` callback drawing a step's progress: a bar where the step counts its units,
    its latest message otherwise. Nothing is drawn when output is not a terminal."""
    from cadence.flows.steps import Progress as Event

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    tasks: dict[str, int] = {}
    with bar:
        main = bar.add_task(title, total=None)

        def report(event: Event) -> None:
            if event.total is None:
                bar.update(main, description=f"{title}: {event.message}")
                return
            if event.step not in tasks:
                tasks[event.step] = bar.add_task(event.step, total=event.total)
            bar.update(
                tasks[event.step],
                completed=event.done or 0,
                total=event.total,
                description=f"{event.step}: {event.message}",
            )

        yield report
