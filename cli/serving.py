"""`cadence serve` (the merge service) and `cadence keys` (its API keys)."""

from __future__ import annotations

from typing import Annotated

import typer

from cadence.cli._render import console, fail

keys_app = typer.Typer(
    help="The merge service's API keys (hashed at rest; a key is shown once).",
    no_args_is_help=True,
)
ROLES_HELP = "service (offers, events, confirm, cancel), marketing (lists), reviewer (audit log), "
ROLES_HELP += "admin (keys, configuration)"


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    today: Annotated[
        str | None,
        typer.Option(
            help="The service's today: YYYY-MM-DD, or 'scores' for the latest list's as-of "
            "date (a simulated shop's own today); the clock runs on from it.",
            show_default="the wall clock",
        ),
    ] = None,
) -> None:
    """Run the merge service (FastAPI on uvicorn): offers, consent, events, exits. The
    database is migrated to the latest schema first; OpenAPI at /docs."""
    from cadence.flows.steps import serving as step
    from cadence.serving._db import DatabaseError

    settings = ctx.obj
    console.print(f"merge service on http://{host}:{port} (OpenAPI: /docs)", markup=False)
    try:
        step.serve(settings, settings.decisions(), host, port, today)
    except (DatabaseError, ValueError) as exc:
        fail(exc)


@keys_app.command("create")
def create(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help=ROLES_HELP)],
    note: Annotated[str, typer.Option(help="What the key is for.")] = "",
) -> None:
    """Make a key; the key is the last word of the last line printed, shown only this once."""
    from cadence.flows.steps import serving as step
    from cadence.serving._db import DatabaseError

    try:
        key = step.create_key(ctx.obj, role, note)
    except (DatabaseError, ValueError) as exc:
        fail(exc)
    key_id = key.split("_")[1]
    console.print(f"key {key_id} with role {role}; it is shown only now, keep it safe:")
    console.print(key, markup=False, highlight=False, soft_wrap=True)


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="The key's id.")]
) -> None:
    """Revoke a key by its id (the word after `cadence_` in the key)."""
    from cadence.flows.steps import serving as step
    from cadence.serving._db import DatabaseError

    try:
        done = step.revoke_key(ctx.obj, key_id)
    except DatabaseError as exc:
        fail(exc)
    if not done:
        fail(f"no live key {key_id!r}")
    console.print(f"key {key_id} revoked", markup=False)
