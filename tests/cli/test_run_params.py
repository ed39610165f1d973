"""`cadence run FLOW --key value ...`: values reach the flow's parameters as written."""

from __future__ import annotations

import datetime as dt

import pytest
import typer

from cadence.cli.flows import parse_params
from cadence.flows.params import PARAMS

pytestmark = pytest.mark.unit


def test_values_arrive_as_written_and_are_validated_by_the_model():
    args = ["--source", "orders", "--file", "log.csv", "--customer", "yes"]
    args += ["--timestamp", "2024", "--amount", "on", "--timestamp-format", "%d/%m/%Y %H:%M"]
    args += ["--as-of=2025-01-31", "--decimal-comma", "--order-id", "00123"]
    p = parse_params(PARAMS["ingest"], args)
    assert (p.customer, p.timestamp, p.amount, p.order_id) == ("yes", "2024", "on", "00123")
    assert p.timestamp_format == "%d/%m/%Y %H:%M"
    assert p.as_of == dt.date(2025, 1, 31) and p.decimal_comma is True
    nested = parse_params(PARAMS["pipeline"], ["--train.horizon", "7", "--score.drift", "false"])
    assert nested.train.horizon == 7 and nested.score.drift is False


def test_a_model_level_error_reads_without_an_empty_option(capsys):
    with pytest.raises(typer.Exit):
        parse_params(PARAMS["ingest"], ["--source", "orders"])
    said = capsys.readouterr().err
    assert "source 'orders' needs file, customer, timestamp" in said and "--:" not in said
