"""The `cadence` command line: parses options, calls a step or a flow, renders the result.

It holds no business rules and does no workspace I/O of its own; heavy libraries are imported
inside the commands that need them, so `--help` and argument errors answer at once."""
