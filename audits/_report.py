"""An audit document rendered for people: a self-contained HTML report (charts embedded as
PNG data, no script, no link outside the file) and a Markdown model card in the structure of
Mitchell et al., "Model Cards for Model Reporting" (2019)."""

from __future__ import annotations

import base64
import io
from typing import Any

import jinja2
from matplotlib.figure import Figure

# What each figure means and what it cannot show, in the reviewer's words.
NOTES = {
    "selection_rate": (
        "Selection rate: the share of a group's shoppers who would get an offer. Demographic "
        "parity compares it across groups; the ratio of the lowest to the highest is held to "
        "the four-fifths rule. Groups that truly buy at different rates will differ here even "
        "under a perfect model, so a gap here is a question to answer, not proof of bias."
    ),
    "equalized_odds": (
        "Equalized odds: among shoppers who did buy, the share offered (true positive rate), "
        "and among those who did not, the share offered (false positive rate), compared across "
        "groups. A gap means the model's mistakes fall more on some groups."
    ),
    "calibration": (
        "Calibration by group: the observed buying rate minus the mean predicted probability "
        "within each group. A gap means a score of, say, 0.4 stands for a different chance in "
        "different groups, so one threshold treats them differently."
    ),
    "intervals": (
        "Intervals: 95% bootstrap intervals from resampling shoppers (a shopper's rows stay "
        "together). A gap is a largest minus a smallest group rate, which noise alone pushes "
        "apart, so its interval is the basic bootstrap one, which corrects for that. A check "
        "passes only when its whole interval is on the right side of the limit, and fails "
        "only when the whole interval is on the wrong side; an interval that straddles the "
        "limit is a warning: the data cannot tell."
    ),
    "cannot_show": (
        "What an audit cannot show: harms to groups not recorded in the data, effects of the "
        "offer itself on shoppers, or whether a difference is justified. Groups are compared "
        "on the test window only, among shoppers active before each snapshot."
    ),
    "proxy": (
        "Proxy risk: how well the model's own inputs predict a sensitive attribute it never "
        "reads (cross-validated ROC AUC; 0.5 means they carry no trace of it). High values "
        "show where a gap could come from; they do not show that the model uses it."
    ),
}

_COLOURS = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e"}
_GAP_NAMES = {
    "demographic_parity_ratio": "demographic parity ratio",
    "demographic_parity_difference": "demographic parity difference",
    "equalized_odds_difference": "equalized odds difference",
    "calibration_gap": "calibration gap",
}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _err(entry: dict, metric: str) -> tuple[float, float, float]:
    iv = entry["intervals"][metric]
    est = iv["estimate"] if iv["estimate"] is not None else float("nan")
    low = iv["low"] if iv["low"] is not None else est
    high = iv["high"] if iv["high"] is not None else est
    return est, max(est - low, 0.0), max(high - est, 0.0)


def grouping_chart(name: str, section: dict[str, Any]) -> str | None:
    """Selection rate and observed-minus-predicted rate per group, with 95% intervals."""
    groups = [g for g in section.get("groups", []) if "intervals" in g]
    if not groups:
        return None
    labels = [g["group"] for g in groups]
    height = max(0.45 * len(labels) + 1.4, 3.2)
    # A Figure of its own, not pyplot's global state: nothing is switched at import.
    fig = Figure(figsize=(14, height))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.1]})
    for ax, metric, title in (
        (axes[0], "selection_rate", "selection rate (offered)"),
        (axes[1], "calibration_difference", "observed - predicted buying rate"),
    ):
        est, lo, hi = zip(*(_err(g, metric) for g in groups), strict=True)
        ax.barh(labels, est, xerr=[lo, hi], color="#4c72b0", capsize=3)
        ax.set_title(title, fontsize=10)
        ax.axvline(0, color="#333", lw=0.6)
        ax.grid(axis="x", alpha=0.3)
    axes[1].set_yticklabels([])
    ax = axes[2]
    top = 0.0
    for g in groups:
        curve = g.get("calibration_curve", [])
        xs, ys = [c["predicted"] for c in curve], [c["observed"] for c in curve]
        ax.plot(xs, ys, marker="o", ms=3, lw=1, label=g["group"])
        top = max(top, *xs, *ys) if xs else top
    ax.plot([0, top], [0, top], color="#333", lw=0.6, ls="--")
    ax.set_title("observed vs predicted (score deciles)", fontsize=10)
    ax.set_xlabel("mean predicted", fontsize=9)
    ax.set_ylabel("observed", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=1 + len(groups) // 8)
    fig.suptitle(name, fontsize=11)
    fig.tight_layout()
    return _png(fig)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def render_html(doc: dict[str, Any]) -> str:
    """The audit as one HTML file that needs nothing else: styles inline, charts as data."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cadence.audits", "."),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    sections = doc["targeting"]["sections"]
    charts = {name: grouping_chart(name, s) for name, s in sections.items()}
    return env.get_template("report.html.j2").render(
        doc=doc,
        m=doc["model"],
        t=doc["targeting"],
        colour=_COLOURS[doc["verdict"]],
        charts=charts,
        notes=NOTES,
        fmt=_fmt,
        gap_names=_GAP_NAMES,
    )


def _check_line(name: str, c: dict) -> str:
    interval = f" [{_fmt(c.get('low'))}, {_fmt(c.get('high'))}]" if "low" in c else ""
    side = c["side"].replace("_", " ")
    return (
        f"| {name} | {_GAP_NAMES[c['gap']]} | {_fmt(c.get('estimate'))}{interval} | "
        f"{side} {c['limit']} | {c['status']} |"
    )


def model_card(doc: dict[str, Any]) -> str:
    """A Markdown model card (Mitchell et al. 2019): details, intended use, factors, metrics,
    evaluation and training data, quantitative analyses, ethical considerations, caveats."""
    m, t = doc["model"], doc["targeting"]
    perf = doc.get("performance", {})
    lines = [
        f"# Model card: {m['name']} v{m['version']}",
        "",
        "## Model details",
        f"- Registered as `{m['uri']}`; propensity model: {m['propensity']}; "
        f"{m['features']} behavioural features; horizon {m['horizon_days']} days.",
        "- Predicts the probability that a shopper orders again within the horizon, and when.",
        f"- Fairness audit: **{doc['verdict']}** ({doc['audited_at']}).",
        "",
        "## Intended use",
        "- Choosing which shoppers get an invitation to reorder a little earlier, with the same "
        "incentive for everyone in a cohort, and explicit opt-in.",
        "- Planning demand and shipment merging from the expected next-order dates.",
        "",
        "## Out-of-scope uses",
        "- Setting prices or incentives per person; credit, insurance or employment decisions.",
        "- Any decision about a shopper who withdrew consent to profiling or contact.",
        "- Shops whose customers differ from the training data without retraining and re-auditing.",
        "",
        "## Factors",
        f"- Sensitive attributes (never model inputs): {', '.join(doc['settings']['sensitive'])}.",
        f"- Proxies through which they may act: {', '.join(doc['settings']['proxies']) or 'none'}.",
        "",
        "## Metrics",
        f"- Decision audited: an offer at probability >= {doc['operating_threshold']}.",
        "- Selection rate, true and false positive rates, precision, ROC AUC and calibration "
        "per group; demographic parity ratio, equalized odds difference and calibration gap "
        f"between groups, with {doc['settings']['resamples']}-resample 95% intervals.",
    ]
    if perf:
        lines.append(
            f"- Overall on the test window: ROC AUC {_fmt(perf.get('roc_auc'))}, "
            f"Brier {_fmt(perf.get('brier'), 4)}, ECE {_fmt(perf.get('ece'), 4)}."
        )
    lines += [
        "",
        "## Evaluation data",
        f"- Test window {doc['data']['window']}: {t['rows']} rows, {t['customers']} shoppers; "
        f"{doc['data']['population']}.",
        "",
        "## Training data",
        f"- Trained on {m['train_window']}, calibrated on {m['calibrate_window']}; features "
        f"build `{doc['data']['features_fingerprint'][:12]}`.",
        "",
        "## Quantitative analyses (fairness)",
        "| grouping | check | estimate [95% interval] | limit | status |",
        "|---|---|---|---|---|",
    ]
    for name, s in t["sections"].items():
        if "missing" in s:
            lines.append(f"| {name} | not audited: {s['missing']} | | | WARN |")
            continue
        for c in s["checks"]:
            lines.append(_check_line(name, c))
    lines += ["", "Proxy risk (ROC AUC of predicting the attribute from the model's inputs):"]
    for a, r in doc["proxy_risk"]["attributes"].items():
        top = ", ".join(f["feature"] for f in r.get("top_features", [])[:3])
        lines.append(f"- {a}: {_fmt(r.get('roc_auc'))}" + (f" (most from {top})" if top else ""))
    for a, why in doc["proxy_risk"]["missing"].items():
        lines.append(f"- {a}: not audited ({why})")
    mg = doc.get("mitigation", {})
    if "after" in mg:
        b, a = mg["before"], mg["after"]
        lines += [
            "",
            f"Mitigation for comparison (ThresholdOptimizer, {mg['constraints']}, on "
            f"{mg['attribute']}): verdict {mg['verdict']}; offers {b['offers']} -> {a['offers']}, "
            f"orders among the offered {b['orders_reached']} -> {a['orders_reached']}, "
            f"ROC AUC {_fmt(b['roc_auc'])} -> {_fmt(a['roc_auc'])}. {mg['sensitive_input']}.",
        ]
    lines += [
        "",
        "## Ethical considerations",
        "- Targeting decides who is offered an incentive; groups that buy less often are "
        "offered less. Parity gaps are reported with intervals so that noise is not read as "
        "bias, nor bias as noise.",
        "- Place attributes (city tier, region) correlate with the sensitive attributes; the "
        "proxy-risk figures show how much of each the model's inputs carry.",
        f"- Incentive parity: {doc['incentive_parity']['status']} "
        f"({doc['incentive_parity']['note']}).",
        "",
        "## Caveats and recommendations",
        "- " + NOTES["cannot_show"],
        f"- Merging: {doc['merging']['note']}. Routing: {doc['routing']['note']}.",
        "- Re-audit after every retraining; the promotion gate does so.",
        "",
    ]
    return "\n".join(lines)
