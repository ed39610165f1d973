"""The drift check's report: one HTML page a reviewer reads in a browser."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from cadence.flows.drift import Figures
    from cadence.models._drift import Limits, Verdict


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: right; }
th { border-bottom: 1px solid #888; } td:first-child, th:first-child { text-align: left; }
tr.over td { background: #fdd; font-weight: 600; } .retrain { color: #b00; } .ok { color: #070; }
"""


def render(figures: Figures, v: Verdict, limits: Limits) -> str:
    """The drift report: verdict and reasons, the score's PSI and the AUCs, then every model
    input by PSI, largest first, those beyond the limit highlighted."""
    e = html.escape
    f = figures

    def num(x, digits=3) -> str:
        return "n/a" if x is None or pd.isna(x) else f"{x:.{digits}f}"

    word = "retrain" if v.retrain else "ok"
    reasons = "".join(f"<li>{e(r)}</li>" for r in v.reasons) or "<li>within the limits</li>"
    auc_at = f" (snapshot {f.auc_snapshot.date()})" if f.auc_snapshot is not None else ""
    rows = []
    for feature, value in f.feature_psi.items():
        s = f.summary.loc[feature]
        cls = ' class="over"' if value > limits.max_feature_psi else ""
        rows.append(
            f"<tr{cls}><td>{e(str(feature))}</td><td>{num(value)}</td>"
            f"<td>{num(s.mean_reference)}</td><td>{num(s.mean_current)}</td>"
            f"<td>{s.missing_reference:.1%}</td><td>{s.missing_current:.1%}</td></tr>"
        )
    over = int((f.feature_psi > limits.max_feature_psi).sum())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Drift {f.current.date()}: {e(f.name)} v{e(f.version)}</title><style>{_STYLE}</style></head>
<body>
<h1>Drift of {e(f.name)} v{e(f.version)} at {f.current.date()}:
<span class="{word}">{word}</span></h1>
<ul>{reasons}</ul>
<p>Reference: the champion's {e(f.reference_window)}.
Current: the snapshot of {f.current.date()}.</p>
<table>
<tr><th>figure</th><th>value</th><th>limit</th></tr>
<tr><td>score PSI</td><td>{num(f.score_psi)}</td><td>{limits.max_score_psi}</td></tr>
<tr><td>test ROC AUC</td><td>{num(f.auc_test)}</td><td></td></tr>
<tr><td>realised ROC AUC{auc_at}</td><td>{num(f.auc_realised)}</td>
<td>drop &le; {limits.max_auc_drop}</td></tr>
<tr><td>inputs above PSI {limits.max_feature_psi}</td><td>{over} of {len(f.feature_psi)}</td>
<td></td></tr>
</table>
<h2>Model inputs by PSI</h2>
<table>
<tr><th>input</th><th>PSI</th><th>mean, reference</th><th>mean, current</th>
<th>missing, reference</th><th>missing, current</th></tr>
{chr(10).join(rows)}
</table>
</body></html>
"""
