"""Line-level order logs: with --order-id, rows sharing an id are the lines of one order (an
invoice's products), summed into it; --unit-price gives a line's amount as quantity x price;
and the ingest flow takes every option the command line does."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from cadence.ingest import OrderLogError, import_orders, read_order_log, validate_tables

pytestmark = pytest.mark.unit

NOW = pd.Timestamp("2025-12-31 12:00", tz="UTC")


def _import(tmp_path: Path, header: str, rows: list[str], **options):
    path = tmp_path / "log.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return import_orders(read_order_log(path), **{"now": NOW, **options})


def _orders(result) -> list[tuple]:
    o = result.orders.to_pydict()
    return list(zip(o["user_id"], o["n_items"], o["amount"], strict=True))


# --- lines summed into orders -----------------------------------------------------------------

IDS = dict(customer="who", timestamp="when", amount="paid", order_id="id")


def test_the_lines_of_an_order_are_summed(tmp_path):
    rows = [
        "1,A,2025-01-02 10:00,1.1,2",
        "2,B,2025-01-02 09:00,5,1",
        "1,A,2025-01-02T10:00:00,2.2,3",  # the same instant, written another way
    ]
    header = "id,who,when,paid,n"
    result = _import(tmp_path, header, rows, **IDS, quantity="n")
    # Summed as written: 1.1 + 2.2 is 3.3, not 3.3000000000000003.
    assert _orders(result) == [("B", 1, 5.0), ("A", 5, 3.3)]
    assert result.orders.column("ordered_at")[1].as_py().isoformat() == "2025-01-02T10:00:00+00:00"
    assert result.order_ids is not None
    assert result.order_ids.column("shop_order_id").to_pylist() == ["2", "1"]
    assert (result.lines, result.bad_rows, result.duplicates) == (3, [], [])
    # Without --quantity each line is one item.
    assert _orders(_import(tmp_path, header, rows, **IDS)) == [("B", 1, 5.0), ("A", 2, 3.3)]


def test_the_same_product_on_two_lines_is_summed_not_a_duplicate(tmp_path):
    rows = ["5,A,2025-01-02,2.5,1", "5,A,2025-01-02,2.5,1"]
    result = _import(tmp_path, "id,who,when,paid,n", rows, **IDS, quantity="n")
    assert _orders(result) == [("A", 2, 5.0)]
    assert result.duplicates == [] and result.bad_rows == []
    # Without --order-id each row is an order, and a repeated row is a duplicate.
    without = {k: v for k, v in IDS.items() if k != "order_id"}
    result = _import(tmp_path, "id,who,when,paid,n", rows, **without, on_bad_rows="skip")
    assert [b.position for b in result.duplicates] == [3] and _orders(result) == [("A", 1, 2.5)]


def test_lines_that_disagree_with_their_order_are_bad_rows(tmp_path):
    rows = [
        "1,A,2025-01-02 10:00,1",
        "1,B,2025-01-02 10:00,2",  # another customer
        "1,A,2025-01-02 10:05,4",  # another time
        "1,A,2025-01-02 10:00,8",
        "2,,2025-01-03,1",  # no customer: order 2's first line is the next
        "2,C,2025-01-03,1",
    ]
    with pytest.raises(OrderLogError) as exc:
        _import(tmp_path, "id,who,when,paid", rows, **IDS)
    message = str(exc.value)
    assert message.startswith("3 bad value(s) in 3 line(s); nothing was written")
    assert "line 3: who = 'B': differs from line 2, the first line of order 1 ('A')" in message
    assert (
        "line 4: when = '2025-01-02 10:05': differs from line 2, the first line of order 1 "
        "('2025-01-02 10:00')"
    ) in message
    assert "line 6: who = '': empty customer id" in message
    result = _import(tmp_path, "id,who,when,paid", rows, **IDS, on_bad_rows="skip")
    # The order is as its first line says, with the lines that agree.
    assert _orders(result) == [("A", 2, 9.0), ("C", 1, 1.0)]
    assert [(b.position, b.column) for b in result.bad_rows] == [
        (3, "who"),
        (4, "when"),
        (6, "who"),
    ]


def test_an_order_with_negative_lines_is_the_order_and_a_refund_of_it(tmp_path):
    rows = [
        "7,A,2025-01-02 10:00,3,2.00",
        "7,A,2025-01-02 10:00,-1,2.00",  # one item taken back on the invoice itself
        "7,A,2025-01-02 10:00,1,5.00",
        "8,B,2025-01-03 10:00,-2,1.50",  # a refund with no order in the log
    ]
    result = _import(
        tmp_path,
        "id,who,when,n,price",
        rows,
        customer="who",
        timestamp="when",
        unit_price="price",
        quantity="n",
        order_id="id",
    )
    assert _orders(result) == [("A", 4, 11.0)]
    returns = result.returns.to_pydict()
    assert returns["order_id"] == [1, None] and returns["reason"] == ["refund", "refund"]
    assert returns["quantity"] == [1, 2] and returns["refund"] == [2.0, 3.0]
    assert (
        validate_tables(
            {"orders": result.orders.to_pandas(), "returns": result.returns.to_pandas()}, end=NOW
        )
        == []
    )


def test_returns_of_one_order_at_other_times_are_other_returns(tmp_path):
    # An event log: the order, later its cancellation and a refund, all under its id.
    rows = [
        "100,A,2025-01-02,10,no",
        "100,A,2025-01-05,-4,no",
        "100,A,2025-01-09,-1,no",
        "100,A,2025-01-09,-2,no",
        "101,A,2025-01-06,3,yes",
    ]
    result = _import(tmp_path, "id,who,when,paid,gone", rows, **IDS, cancelled="gone")
    assert _orders(result) == [("A", 1, 10.0)]
    returns = result.returns.to_pydict()
    assert returns["reason"] == ["refund", "cancelled", "refund"]
    assert returns["order_id"] == [1, None, 1] and returns["refund"] == [4.0, 3.0, 3.0]


def test_a_return_summing_beyond_its_table_is_refused_by_its_lines(tmp_path):
    rows = ["C1,A,2025-01-02,-20000,1", "C1,A,2025-01-02,-20000,1", "C2,A,2025-01-02,-5,1"]
    result = _import(
        tmp_path,
        "id,who,when,n,price",
        rows,
        customer="who",
        timestamp="when",
        unit_price="price",
        quantity="n",
        order_id="id",
        cancelled_prefix="C",
        on_bad_rows="skip",
    )
    said = "more than 32,767 items in one return (2 lines together)"
    assert [(b.position, b.column, b.reason) for b in result.bad_rows] == [
        (2, "n", said),
        (3, "n", said),
    ]
    assert result.returns.column("quantity").to_pylist() == [5]


# --- a UCI Online Retail-shaped log -----------------------------------------------------------

UCI = """Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,1/12/2010 8:26,2.55,17850,United Kingdom
536365,71053,WHITE METAL LANTERN,6,1/12/2010 8:26,3.39,17850,United Kingdom
536365,84406B,CREAM CUPID HEARTS COAT HANGER,8,1/12/2010 8:26,2.75,17850,United Kingdom
536366,22633,HAND WARMER UNION JACK,6,1/12/2010 8:28,1.85,17850,United Kingdom
536366,22632,HAND WARMER RED POLKA DOT,6,1/12/2010 8:28,1.85,17850,United Kingdom
536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,1/12/2010 8:34,1.69,13047,United Kingdom
536367,22745,"SET 2 TEA TOWELS I LOVE LONDON, RED",6,1/12/2010 8:34,2.10,13047,United Kingdom
C536379,D,Discount,-1,1/12/2010 9:41,27.50,14527,United Kingdom
536414,22139,,56,1/12/2010 11:52,0.00,,United Kingdom
536544,21773,DECORATIVE ROSE BATHROOM BOTTLE,1,1/12/2010 14:32,2.51,,United Kingdom
536544,21774,DECORATIVE CATS BATHROOM BOTTLE,2,1/12/2010 14:32,2.51,,United Kingdom
536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,1/12/2010 8:34,1.69,13047,United Kingdom
C536365,71053,WHITE METAL LANTERN,-6,13/12/2010 10:00,3.39,17850,United Kingdom
C536365,84406B,CREAM CUPID HEARTS COAT HANGER,-8,13/12/2010 10:00,2.75,17850,United Kingdom
"""
UCI_OPTIONS = dict(
    customer="Customer ID",
    timestamp="InvoiceDate",
    unit_price="Price",
    quantity="Quantity",
    order_id="Invoice",
    cancelled_prefix="C",
    on_bad_rows="skip",
)


def test_a_uci_shaped_log_imports_as_orders_and_linked_returns(tmp_path):
    path = tmp_path / "online_retail.csv"
    path.write_text(UCI, encoding="utf-8")
    result = import_orders(read_order_log(path), **UCI_OPTIONS, now=NOW)
    assert result.timestamp_form == "%d/%m/%Y %H:%M" and result.form_inferred
    # Invoices without a customer are left out, by their lines.
    assert [(b.position, b.reason) for b in result.bad_rows] == [
        (10, "empty customer id"),
        (11, "empty customer id"),
        (12, "empty customer id"),
    ]
    orders = result.orders.to_pandas()
    assert orders.user_id.tolist() == ["17850", "17850", "13047"]
    assert orders.n_items.tolist() == [20, 12, 70]
    assert orders.amount.tolist() == [57.64, 22.2, 120.76]
    assert result.order_ids is not None
    assert result.order_ids.column("shop_order_id").to_pylist() == ["536365", "536366", "536367"]
    returns = result.returns.to_pandas()
    # C536365 cancels two lines of 536365; C536379's invoice is not in the log.
    assert result.returns.column("order_id").to_pylist() == [None, 1]
    assert returns.user_id.tolist() == ["14527", "17850"]
    assert returns.quantity.tolist() == [1, 14] and returns.refund.tolist() == [27.5, 42.34]
    assert set(returns.reason) == {"cancelled"} and result.lines == 11
    assert validate_tables({"orders": orders, "returns": returns}, end=NOW) == []

    # The same sums as a plain pandas reading of the file, invoice by invoice.
    frame = pd.read_csv(path, dtype=str).dropna(subset=["Customer ID"])
    frame["amount"] = frame.Quantity.astype(int) * frame.Price.astype(float)
    kept = frame[~frame.Invoice.str.startswith("C")]
    want = kept.groupby("Invoice", sort=False).amount.sum()
    assert orders.amount.tolist() == pytest.approx(want.tolist())


# --- --unit-price -----------------------------------------------------------------------------

PRICED = dict(customer="who", timestamp="when", unit_price="price", quantity="n")


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("inf", "not a finite number"),
        ("NaN", "not a finite number"),
        ('"1,234.50"', "a thousands separator (',')"),
        ("$2.50", "a currency symbol"),
        ('"2,50"', "a decimal comma; pass --decimal-comma"),
        ("", "missing unit price"),
    ],
)
def test_unit_prices_that_are_not_plain_numbers_are_bad_rows(tmp_path, written, reason):
    rows = ["A,2025-01-02,3,2.55", f"B,2025-01-03,2,{written}"]
    result = _import(tmp_path, "who,when,n,price", rows, **PRICED, on_bad_rows="skip")
    assert [(b.position, b.column) for b in result.bad_rows] == [(3, "price")]
    assert result.bad_rows[0].reason.startswith(reason), result.bad_rows[0].reason
    # 3 x 2.55 as written: 7.65, not 7.6499999999999995.
    assert _orders(result) == [("A", 3, 7.65)]


def test_unit_prices_read_with_a_decimal_comma(tmp_path):
    rows = ["A;2025-01-02;3;2,55", "B;2025-01-03;-2;0,1"]
    result = _import(tmp_path, "who;when;n;price", rows, **PRICED, decimal_comma=True)
    assert _orders(result) == [("A", 3, 7.65)]
    assert result.returns.column("refund").to_pylist() == [0.2]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"amount": None, "unit_price": None}, "--amount COLUMN"),
        ({"amount": "price", "unit_price": "price"}, "--amount and --unit-price: give one"),
        ({"quantity": None}, "--unit-price needs --quantity"),
        ({"unit_price": "Preis"}, "--unit-price 'Preis': no such column"),
    ],
)
def test_the_money_options_are_checked(tmp_path, options, said):
    with pytest.raises(OrderLogError, match=re.escape(said)) as exc:
        _import(tmp_path, "who,when,n,price", ["A,2025-01-02,3,2.55"], **{**PRICED, **options})
    if "--amount COLUMN" in said:
        assert "--unit-price COLUMN" in str(exc.value)


# --- the ingest flow's parameters -------------------------------------------------------------


def test_the_ingest_flow_takes_every_option_the_command_line_has():
    import inspect

    import typer.main

    from cadence.cli.data import data_app
    from cadence.flows.params import IMPORT_OPTIONS, IngestParams
    from cadence.flows.steps.ingest import import_order_log

    command = typer.main.get_command(data_app).commands["import-orders"]  # type: ignore[attr-defined]
    cli = {p.name for p in command.params} - {"file", "out", "replace", "force"}
    step = set(inspect.signature(import_order_log).parameters)
    step -= {"file", "out", "truth", "replace", "force"}
    assert cli == step == set(IMPORT_OPTIONS)
    assert set(IMPORT_OPTIONS) <= set(IngestParams.model_fields)


def test_cadence_run_params_import_a_uci_log_and_a_rerun_is_unchanged(tmp_path):
    from cadence.cli.flows import parse_params
    from cadence.flows.params import IngestParams
    from cadence.flows.steps import ingest as step

    path = tmp_path / "online_retail.csv"
    path.write_text(UCI, encoding="utf-8")
    args = ["--source", "orders", "--file", str(path), "--customer", "Customer ID"]
    args += ["--timestamp", "InvoiceDate", "--unit-price", "Price", "--quantity", "Quantity"]
    args += ["--order-id", "Invoice", "--cancelled-prefix", "C", "--on-bad-rows", "skip"]
    args += ["--as-of", "2010-12-31", "--timezone", "Europe/London"]
    params = parse_params(IngestParams, args)
    options = params.import_options()
    out = tmp_path / "raw"
    done = step.import_order_log(path, out, **options)
    assert (done.orders, done.returns, done.lines) == (3, {"cancelled": 2}, 11)
    manifest = step.read_manifest(out)
    assert manifest is not None and manifest.options is not None
    assert manifest.options["unit_price"] == "Price" and manifest.options["as_of"] == "2010-12-31"
    assert "decimal_comma" not in manifest.options and "amount" not in manifest.options
    # The flow's re-run, and the command line's with the same options, read as unchanged.
    assert step.unchanged(out, path, **options)
    assert step.unchanged(out, path, **{**options, "as_of": "2010-12-31"})
    assert not step.unchanged(out, path, **{**options, "timezone": "UTC"})
    assert not step.unchanged(out, path, **{**options, "decimal_comma": True})


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ([], "needs file, customer, timestamp, amount or unit_price"),
        (["--file", "x.csv", "--unit-price", "p"], "--unit-price needs --quantity"),
        (["--file", "x.csv", "--amount", "p", "--timezone", "Mars"], "--timezone 'Mars'"),
    ],
)
def test_bad_ingest_params_are_refused_before_the_flow_starts(args, said):
    from pydantic import ValidationError

    from cadence.flows.params import IngestParams

    data = dict(zip([a.lstrip("-").replace("-", "_") for a in args[::2]], args[1::2], strict=True))
    if args:
        data |= {"customer": "who", "timestamp": "when"}
    with pytest.raises(ValidationError, match=re.escape(said)):
        IngestParams.model_validate({"source": "orders", **data})
