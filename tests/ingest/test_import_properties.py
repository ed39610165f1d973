"""The importer over random files: dialects, encodings, column orders, extra columns, ids that
look like numbers, zones and amounts. A file it accepts must import exactly as a plain pandas
reading of the same file says (`pd.read_csv` with the known encoding and delimiter, every value
as text, then parsed); a file written by the rules (as every one here is) must be accepted
when its encoding and delimiter are named."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from cadence.ingest import OrderLogError, import_orders, read_order_log

pytestmark = [
    pytest.mark.unit,
    # The strategies draw nothing from `random`, but another thread of the test session can
    # move its global state while Hypothesis watches it during a draw, which Hypothesis
    # reports as this warning (seen once in a full run).
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "gbk")
ZONES = ("UTC", "Europe/Berlin", "Asia/Shanghai", "America/New_York")
ASCII = "abcXYZ019 -_.,;'"
LETTERS = ASCII + "éüàçÖ" + "张伟李娜王芳"
# The words a file in each legacy encoding holds when the encoding is left to detection: Western
# names, or Chinese ones. Random letters are not: GBK's 李 is cp1252's Àî byte for byte, and no
# detector can tell them apart; with the encoding named, any text the encoding holds is drawn.
WORDS = {
    "cp1252": ["Müller", "José", "Zoë", "François", "Nuñez", "Ångström", "Çelik", "Søren"],
    "gbk": ["张伟", "李娜", "王芳", "刘洋", "陈静", "李"],
}
NOW = pd.Timestamp("2030-01-01", tz="UTC")


@st.composite
def order_logs(draw):
    n = draw(st.integers(1, 12))
    encoding = draw(st.sampled_from(ENCODINGS))
    named = draw(st.booleans())  # encoding and delimiter named, or detected
    legacy = not named and encoding in WORDS
    text = st.text(ASCII if legacy else LETTERS, min_size=1, max_size=8)
    if legacy:
        text = st.one_of(text, st.sampled_from(WORDS[encoding]))
    ids = draw(
        st.lists(
            st.one_of(
                st.from_regex(r"0[0-9]{1,6}", fullmatch=True),  # leading zeros: kept as written
                text.filter(lambda s: s.strip() != ""),
            ),
            min_size=n,
            max_size=n,
        )
    )
    # Day times from 08:00 on: no clock change falls there in these zones; one second per row
    # apart, so no two rows repeat each other.
    base = draw(st.datetimes(dt.datetime(2020, 1, 1), dt.datetime(2024, 12, 1)))
    base = base.replace(hour=draw(st.integers(8, 20)), microsecond=0)
    gaps = draw(st.lists(st.integers(0, 20 * 86400), min_size=n, max_size=n))
    times = [base + dt.timedelta(seconds=g * 61 + i) for i, g in enumerate(gaps)]
    form = draw(st.sampled_from(["iso", "iso-t", "offset", "day-first"]))
    if form == "day-first":
        times[0] = times[0].replace(day=25)  # a day above 12 proves the form
    cents = draw(st.lists(st.integers(-(10**7), 10**7), min_size=n, max_size=n))
    quantities = draw(
        st.one_of(st.none(), st.lists(st.sampled_from([-3, -1, 1, 2, 5]), min_size=n, max_size=n))
    )
    extra = draw(st.lists(st.sampled_from(["note", "Filiale", "备注", "x"]), unique=True))
    return {
        "ids": ids,
        "times": times,
        "form": form,
        "cents": cents,
        "quantities": quantities,
        "extra": extra,
        "extra_values": draw(st.lists(text | st.just(""), min_size=n, max_size=n)),
        "order": draw(st.permutations(range(4 + len(extra)))),
        "delimiter": draw(st.sampled_from([",", ";", "\t"])),
        "quoting": draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
        "encoding": encoding,
        "decimal_comma": draw(st.booleans()),
        "zone": draw(st.sampled_from(ZONES)),
        "named": named,
    }


def _when(t: dt.datetime, form: str) -> str:
    if form == "iso":
        return t.strftime("%Y-%m-%d %H:%M:%S")
    if form == "iso-t":
        return t.strftime("%Y-%m-%dT%H:%M:%S")
    if form == "offset":
        return t.strftime("%Y-%m-%dT%H:%M:%S+02:00")
    return t.strftime("%d/%m/%Y %H:%M:%S")


def _write(path: Path, log: dict) -> None:
    amount = [f"{c / 100:.2f}" for c in log["cents"]]
    if log["decimal_comma"]:
        amount = [a.replace(".", ",") for a in amount]
    columns = {
        "Kunde Nr": log["ids"],
        "Zeit": [_when(t, log["form"]) for t in log["times"]],
        "Betrag": amount,
        "Menge": [str(q) for q in log["quantities"] or [1] * len(amount)],
    }
    for name in log["extra"]:
        columns[name] = log["extra_values"]
    names = [list(columns)[i] for i in log["order"]]
    text = io.StringIO(newline="")
    writer = csv.writer(text, delimiter=log["delimiter"], quoting=log["quoting"])
    writer.writerow(names)
    writer.writerows(zip(*(columns[c] for c in names), strict=True))
    try:
        raw = text.getvalue().encode(log["encoding"])
    except UnicodeEncodeError:
        assume(False)  # the encoding cannot hold this text: not a file a shop could have
        raise
    if not log["named"] and not log["encoding"].startswith("utf"):
        # Valid UTF-8 is read as UTF-8, the rule; a legacy file that happens to be valid UTF-8
        # (one GBK character can be) cannot be told apart by any detector.
        try:
            raw.decode("utf-8")
            assume(False)
        except UnicodeDecodeError:
            pass
    path.write_bytes(raw)


def _as_pandas_reads_it(path: Path, log: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(orders, returns) from a plain pandas reading of the file."""
    frame = pd.read_csv(
        path, sep=log["delimiter"], encoding=log["encoding"], dtype=str, keep_default_na=False
    )
    form = "%d/%m/%Y %H:%M:%S" if log["form"] == "day-first" else "ISO8601"
    when = pd.to_datetime(frame["Zeit"], format=form, utc=log["form"] == "offset")
    if log["form"] != "offset":
        when = when.dt.tz_localize(log["zone"]).dt.tz_convert("UTC")
    amount = frame["Betrag"].str.replace(",", ".").astype(float)
    qty = frame["Menge"].astype(int) if log["quantities"] else pd.Series(1, index=frame.index)
    rows = pd.DataFrame(
        {"user_id": frame["Kunde Nr"].str.strip(), "when": when, "amount": amount, "n": qty}
    )
    back = (rows.amount < 0) | (rows.n < 0)
    orders = rows[~back].sort_values("when", kind="stable").reset_index(drop=True)
    returns = rows[back].sort_values("when", kind="stable").reset_index(drop=True)
    return orders, returns.assign(amount=returns.amount.abs(), n=returns.n.abs())


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(log=order_logs())
def test_an_accepted_file_imports_as_pandas_reads_it(tmp_path, log):
    path = tmp_path / "log.csv"
    _write(path, log)
    named = {"encoding": log["encoding"], "delimiter": log["delimiter"]} if log["named"] else {}
    try:
        result = import_orders(
            read_order_log(path, **named),
            customer="Kunde Nr",
            timestamp="Zeit",
            amount="Betrag",
            quantity="Menge" if log["quantities"] else None,
            timezone=log["zone"],
            decimal_comma=log["decimal_comma"],
            now=NOW,
        )
    except OrderLogError as exc:
        event(f"refused: {str(exc).split(': ')[1][:40]}")
        # Detection may fail on a tiny file and say so; a file whose encoding and delimiter
        # are named, written by the rules as this one is, must go in.
        assert not log["named"], "a well-formed file with named encoding was refused"
        return
    event(f"accepted ({'named' if log['named'] else 'detected'} {log['encoding']})")
    orders, returns = _as_pandas_reads_it(path, log)
    got = result.orders.to_pandas()
    assert got.user_id.tolist() == orders.user_id.tolist()
    assert got.ordered_at.tolist() == orders["when"].tolist()
    assert got.amount.tolist() == orders.amount.tolist()
    assert got.n_items.tolist() == orders.n.tolist()
    came_back = result.returns.to_pandas()
    assert came_back.user_id.tolist() == returns.user_id.tolist()
    assert came_back.requested_at.tolist() == returns["when"].tolist()
    assert came_back.refund.tolist() == returns.amount.tolist()
    assert came_back.quantity.tolist() == returns.n.tolist()
    assert set(came_back.reason) <= {"refund"}
    assert result.bad_rows == [] and result.duplicates == []
    assert result.form_inferred == (log["form"] == "day-first")
