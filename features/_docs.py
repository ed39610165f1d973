"""The catalogue as Markdown (docs/features.md is generated from it and checked by a test)."""

from __future__ import annotations

from cadence.features.catalogue import NODE_FAMILIES, USER_FAMILIES


def catalogue_markdown() -> str:
    families = (*USER_FAMILIES, *NODE_FAMILIES)
    n_user = sum(len(f.features) for f in USER_FAMILIES)
    n_node = sum(len(f.features) for f in NODE_FAMILIES)
    lines = [
        "# Feature catalogue",
        "",
        "Generated from `features/` by `cadence features docs`; do not edit by hand.",
        "",
        f"{n_user} user features and {n_node} node features. A feature as of snapshot t uses "
        "only events strictly before t. Windows are in days before t. Sensitive attributes "
        "(gender, age band) are never features.",
        "",
    ]
    for fam in families:
        needs = ", ".join(fam.tables) if fam.tables else "other families' columns"
        lines += [
            f"## {fam.name} ({len(fam.features)}, keyed by {fam.entity})",
            "",
            f"{fam.description[0].upper()}{fam.description[1:]}. Reads: {needs}.",
            "",
            "| feature | window | type | description |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{f.name}` | {f.window or ''} | {f.dtype} | {f.description} |" for f in fam.features
        ]
        lines.append("")
    return "\n".join(lines)
