"""The merge service through its HTTP API, on SQLite and on PostgreSQL: offers and their
reasons, the explicit opt-in and its idempotency, free cancellation, the profiling opt-out,
every exit condition, roles, the append-only log and the answers to bad input."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from cadence.serving._rules import Score
from cadence.serving._tables import AuditLog, Confirmation, Offer, Order
from tests.serving.conftest import NOW

pytestmark = pytest.mark.unit


def h(keys, role="service", **extra):
    return {"X-API-Key": keys[role], **extra}


def offer(client, keys, user="u1") -> dict:
    r = client.get(f"/v1/users/{user}/offer", headers=h(keys))
    assert r.status_code == 200, r.text
    return r.json()


def confirm(client, keys, offer_id, key="idem-key-0001", version="2026-11"):
    return client.post(
        f"/v1/offers/{offer_id}/confirm",
        json={"channel": "app", "consent_version": version},
        headers=h(keys, **{"Idempotency-Key": key}),
    )


def place(client, keys, order_id, user="u1", offer_id=None, event_id=None, **item):
    line = {
        "sku": "SKU-0001",
        "category": "diapers",
        "quantity": 1,
        "unit_price": 25.0,
        "weight_kg": 3.5,
        "volume_cm3": 21000.0,
        "fragile": False,
        **item,
    }
    body = {
        "type": "order_placed",
        "event_id": event_id or f"e-place-{order_id}",
        "occurred_at": NOW.isoformat(),
        "order": {
            "order_id": order_id,
            "user_id": user,
            "offer_id": offer_id,
            "address_id": f"a-{user}",
            "area": "C01",
            "node_id": "RDC-01",
            "zone": "same_province",
            "carrier": "national",
            "distance_km": 120.0,
            "ship_date": str(NOW.date() + dt.timedelta(days=2)),
            "promised_date": str(NOW.date() + dt.timedelta(days=4)),
            "items": [line],
        },
    }
    return client.post("/v1/events", json=body, headers=h(keys))


def event(client, keys, kind, event_id, **fields):
    body = {"type": kind, "event_id": event_id, "occurred_at": NOW.isoformat(), **fields}
    return client.post("/v1/events", json=body, headers=h(keys))


def confirmed_order(client, keys, order_id=1, user="u1", **item):
    o = offer(client, keys, user)["offer"]
    assert confirm(client, keys, o["offer_id"], key=f"idem-{user}-{order_id}").status_code == 200
    r = place(client, keys, order_id, user=user, offer_id=o["offer_id"], **item)
    assert r.status_code == 200, r.text
    return o, r.json()


def feed(client, keys, user="u1"):
    return client.get(f"/v1/users/{user}/events", headers=h(keys)).json()


# --- offers ---------------------------------------------------------------------------------


def test_an_eligible_shopper_gets_one_offer_with_its_terms_and_the_same_one_again(
    client, keys, service
):
    first = offer(client, keys)["offer"]
    assert first["incentive"] == "express_upgrade" and first["discount_rate"] == 0
    assert first["consent_version"] == "2026-11" and first["cohort"] == "order-early"
    # Expected in 5 days, suggested 3 days before that; cancellable until 08:00 that day.
    assert first["suggested_date"] == str(NOW.date() + dt.timedelta(days=2))
    assert first["cancel_until"].startswith(f"{NOW.date() + dt.timedelta(days=2)}T08:00")
    assert offer(client, keys)["offer"]["offer_id"] == first["offer_id"]
    with service.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Offer)) == 1
    assert [e["kind"] for e in feed(client, keys)] == ["offer_made"]


def test_everyone_in_the_cohort_gets_the_same_incentive(client, keys):
    got = {offer(client, keys, u)["offer"]["incentive"] for u in ("u1", "u2", "u3")}
    assert got == {"express_upgrade"}


@pytest.mark.parametrize(
    ("user", "reason"),
    [("low", "below_threshold"), ("later", "not_due"), ("nobody", "not_scored")],
)
def test_no_offer_says_why(client, keys, user, reason):
    answer = offer(client, keys, user)
    assert answer["offer"] is None and answer["reason"] == reason and answer["message"]


def test_the_contact_cap_holds_after_two_offers_in_thirty_days(client, keys, service):
    for _ in range(2):
        o = offer(client, keys)["offer"]
        r = client.post(
            f"/v1/offers/{o['offer_id']}/cancel", json={"channel": "app"}, headers=h(keys)
        )
        assert r.status_code == 200
    assert offer(client, keys)["reason"] == "contact_cap"
    service.clock.now = NOW + dt.timedelta(days=31)
    service.scores.by_user["u1"] = Score(0.8, service.clock.now.date(), "3")
    assert offer(client, keys)["offer"] is not None


def test_an_unanswered_offer_lapses_and_cannot_be_confirmed(client, keys, service):
    o = offer(client, keys)["offer"]
    service.clock.now = NOW + dt.timedelta(hours=49)
    r = confirm(client, keys, o["offer_id"])
    assert r.status_code == 409 and r.json()["code"] == "offer_expired"


def test_withdrawn_contact_consent_means_no_offer_and_withdraws_the_open_one(client, keys):
    o = offer(client, keys)["offer"]
    r = event(client, keys, "consent_changed", "c1", user_id="u1", purpose="contact", granted=False)
    assert r.status_code == 200
    assert offer(client, keys)["reason"] == "contact_withdrawn"
    assert confirm(client, keys, o["offer_id"]).json()["code"] == "offer_cancelled"


# --- confirmation ---------------------------------------------------------------------------


def test_confirming_records_who_when_which_text_and_channel_once(client, keys, service):
    o = offer(client, keys)["offer"]
    first = confirm(client, keys, o["offer_id"])
    assert first.status_code == 200 and first.json()["replayed"] is False
    again = confirm(client, keys, o["offer_id"])
    other_key = confirm(client, keys, o["offer_id"], key="idem-key-0002")
    assert again.json() == {**first.json(), "replayed": True}
    assert other_key.json() == {**first.json(), "replayed": True}
    with service.sessions() as s:
        rows = s.scalars(select(Confirmation)).all()
        assert len(rows) == 1
        assert (rows[0].user_id, rows[0].channel, rows[0].consent_version) == (
            "u1",
            "app",
            "2026-11",
        )
        assert rows[0].confirmed_at == NOW
        actions = s.scalars(select(AuditLog.action).where(AuditLog.offer_id == o["offer_id"]))
        assert list(actions) == ["offer_made", "offer_confirmed"]


def test_an_idempotency_key_cannot_confirm_a_second_offer(client, keys):
    a = offer(client, keys, "u1")["offer"]
    b = offer(client, keys, "u2")["offer"]
    assert confirm(client, keys, a["offer_id"]).status_code == 200
    r = confirm(client, keys, b["offer_id"])
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"


def test_confirming_another_consent_text_is_refused(client, keys):
    o = offer(client, keys)["offer"]
    r = confirm(client, keys, o["offer_id"], version="2025-01")
    assert r.status_code == 409 and r.json()["code"] == "consent_version_mismatch"


def test_a_confirmation_needs_an_idempotency_key(client, keys):
    o = offer(client, keys)["offer"]
    r = client.post(
        f"/v1/offers/{o['offer_id']}/confirm",
        json={"channel": "app", "consent_version": "2026-11"},
        headers=h(keys),
    )
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["message"]


# --- cancellation and opt-out ---------------------------------------------------------------


def test_cancelling_is_free_repeatable_and_returns_the_order_to_normal_handling(client, keys):
    o, _ = confirmed_order(client, keys)
    for _ in range(2):
        r = client.post(
            f"/v1/offers/{o['offer_id']}/cancel", json={"channel": "web"}, headers=h(keys)
        )
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
    kinds = [(e["kind"], e["reason"]) for e in feed(client, keys)]
    assert ("merge_exit", "user_cancelled") in kinds
    assert kinds.count(("offer_cancelled", "user_cancelled")) == 1


def test_cancelling_after_dispatch_is_refused(client, keys):
    o, _ = confirmed_order(client, keys)
    assert event(client, keys, "order_dispatched", "d1", order_id=1).status_code == 200
    r = client.post(f"/v1/offers/{o['offer_id']}/cancel", json={"channel": "app"}, headers=h(keys))
    assert r.status_code == 409 and r.json()["code"] == "offer_dispatched"


def test_opting_out_stops_offers_and_only_the_shopper_can_opt_back_in(client, keys):
    o = offer(client, keys)["offer"]
    r = client.post("/v1/users/u1/profiling-opt-out", json={"channel": "app"}, headers=h(keys))
    assert r.status_code == 200 and r.json()["profiling_opt_out"] is True
    assert offer(client, keys)["reason"] == "profiling_opt_out"
    assert confirm(client, keys, o["offer_id"]).json()["code"] == "offer_cancelled"
    for other in ("marketing", "reviewer", "admin"):
        r = client.post(
            "/v1/users/u1/profiling-opt-in", json={"channel": "app"}, headers=h(keys, other)
        )
        assert r.status_code == 403
    r = client.post("/v1/users/u1/profiling-opt-in", json={"channel": "app"}, headers=h(keys))
    assert r.json()["profiling_opt_out"] is False


def test_logs_name_shoppers_by_pseudonym_only(client, keys, service, caplog):
    with caplog.at_level("DEBUG", logger="cadence.serving"):
        o = offer(client, keys, "u2")["offer"]
        confirm(client, keys, o["offer_id"])
    said = " ".join(r.getMessage() for r in caplog.records)
    assert service.pseudonym("u2") in said and "u2" not in said  # hex ids hold no "u"
    assert "confirmed" in said


def test_an_opted_out_shoppers_score_is_never_read(client, keys, service):
    client.post("/v1/users/u1/profiling-opt-out", json={"channel": "app"}, headers=h(keys))
    before = service.scores.reads
    offer(client, keys)
    assert service.scores.reads == before


# --- exit conditions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"unit_price": 450.0}, "over_value_limit"),
        ({"fragile": True}, "fragile"),
        ({"weight_kg": 25.0}, "oversize"),
        ({"volume_cm3": 90_000.0}, "oversize"),
        ({"category": "electronics"}, "unusual_category"),
    ],
)
def test_an_item_that_breaks_a_rule_releases_the_order(client, keys, service, item, reason):
    o, outcome = confirmed_order(client, keys, **item)
    assert outcome["exits"] == [{"order_id": 1, "reason": reason}]
    with service.sessions() as s:
        order = s.get(Order, 1)
        assert (order.state, order.reason) == ("released", reason)
        assert s.get(Offer, o["offer_id"]).state == "exited"
    assert ("merge_exit", reason) in [(e["kind"], e["reason"]) for e in feed(client, keys)]
    # The shopper gets no new offer for a while after an exit.
    assert offer(client, keys)["reason"] == "recent_exit"


def test_a_usual_item_added_later_keeps_the_merge_and_an_unusual_one_ends_it(client, keys):
    _, outcome = confirmed_order(client, keys)
    assert outcome["exits"] == []
    item = {
        "sku": "SKU-0100",
        "category": "infant_formula",
        "quantity": 2,
        "unit_price": 35.0,
        "weight_kg": 0.9,
        "volume_cm3": 2500.0,
    }
    r = event(client, keys, "item_added", "i1", order_id=1, item=item)
    assert r.json()["exits"] == []
    r = event(client, keys, "item_added", "i2", order_id=1, item={**item, "category": "toys"})
    assert r.json()["exits"] == [{"order_id": 1, "reason": "unusual_category"}]


@pytest.mark.parametrize(
    ("kind", "fields", "reason"),
    [
        ("address_changed", {"user_id": "u1", "address_id": "a-new"}, "address_changed"),
        ("payment_failed", {"order_id": 1}, "payment_failed"),
        ("order_cancelled", {"order_id": 1}, "user_cancelled"),
    ],
)
def test_an_event_that_is_an_exit_condition_releases_the_order(
    client, keys, service, kind, fields, reason
):
    confirmed_order(client, keys)
    r = event(client, keys, kind, "x1", **fields)
    assert r.status_code == 200 and r.json()["exits"] == [{"order_id": 1, "reason": reason}]
    with service.sessions() as s:
        assert s.get(Order, 1).reason == reason


def test_an_address_change_to_the_same_address_is_no_exit(client, keys):
    confirmed_order(client, keys)
    r = event(client, keys, "address_changed", "x1", user_id="u1", address_id="a-u1")
    assert r.json()["exits"] == []


def test_an_exit_rule_turned_off_in_configuration_does_not_fire(client, keys, service):
    service.conf = service.conf.model_copy(
        update={"exits": service.conf.exits.model_copy(update={"fragile": False})}
    )
    _, outcome = confirmed_order(client, keys, fragile=True)
    assert outcome["exits"] == []


def test_an_order_without_a_confirmed_offer_is_never_merged(client, keys, service):
    o = offer(client, keys)["offer"]
    assert place(client, keys, 7, offer_id=o["offer_id"]).status_code == 200
    assert place(client, keys, 8, user="u2").status_code == 200
    with service.sessions() as s:
        assert {s.get(Order, 7).state, s.get(Order, 8).state} == {"normal"}


def test_a_replayed_event_returns_its_first_outcome_and_changes_nothing(client, keys, service):
    confirmed_order(client, keys)
    first = event(client, keys, "payment_failed", "p1", order_id=1).json()
    again = event(client, keys, "payment_failed", "p1", order_id=1).json()
    assert again == {**first, "replayed": True}
    with service.sessions() as s:
        exits = s.scalar(
            select(func.count()).where(AuditLog.action == "merge_exit", AuditLog.order_id == 1)
        )
        assert exits == 1
    r = event(client, keys, "order_cancelled", "p1", order_id=1)
    assert r.status_code == 409 and r.json()["code"] == "event_id_reused"


# --- keys and roles -------------------------------------------------------------------------


def test_a_missing_or_wrong_key_is_401_and_a_wrong_role_403(client, keys):
    assert client.get("/v1/users/u1/offer").status_code == 401
    assert client.get("/v1/users/u1/offer", headers={"X-API-Key": "nope"}).status_code == 401
    for role in ("marketing", "reviewer", "admin"):
        assert client.get("/v1/users/u1/offer", headers=h(keys, role)).status_code == 403
    assert client.get("/v1/audit-log", headers=h(keys, "service")).status_code == 403
    assert client.post("/v1/keys", json={"role": "admin"}, headers=h(keys)).status_code == 403


def test_an_admin_makes_and_revokes_keys_and_a_revoked_key_is_refused(client, keys, service):
    r = client.post("/v1/keys", json={"role": "reviewer"}, headers=h(keys, "admin"))
    assert r.status_code == 201
    made = r.json()
    assert client.get("/v1/audit-log", headers={"X-API-Key": made["key"]}).status_code == 200
    r = client.delete(f"/v1/keys/{made['key_id']}", headers=h(keys, "admin"))
    assert r.status_code == 204
    assert client.get("/v1/audit-log", headers={"X-API-Key": made["key"]}).status_code == 401
    with service.sessions() as s:
        stored = s.execute(text("SELECT key_hash FROM api_keys")).scalars().all()
    assert made["key"] not in stored and all(len(x) == 64 for x in stored)


def test_a_reviewer_reads_the_audit_log_in_order(client, keys):
    confirmed_order(client, keys)
    r = client.get("/v1/audit-log?user_id=u1", headers=h(keys, "reviewer"))
    assert [e["action"] for e in r.json()] == ["offer_made", "offer_confirmed", "order_placed"]
    # Each line names the key that acted (its id, never the key).
    service_key_id = keys["service"].split("_")[1]
    assert {e["actor"] for e in r.json()} == {service_key_id}
    seqs = [e["seq"] for e in r.json()]
    assert seqs == sorted(seqs)
    after = client.get(f"/v1/audit-log?after={seqs[0]}&user_id=u1", headers=h(keys, "reviewer"))
    assert [e["seq"] for e in after.json()] == seqs[1:]


def test_the_audit_log_refuses_updates_and_deletes(client, keys, service):
    confirmed_order(client, keys)
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with service.engine.connect() as c, pytest.raises(DBAPIError, match="append-only"):
            c.execute(text(statement))
    with service.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog)) >= 3


# --- bad input ------------------------------------------------------------------------------


def test_bad_input_gets_a_4xx_naming_the_field(client, keys):
    r = client.post("/v1/events", content=b"{not json", headers=h(keys))
    assert r.status_code == 422
    r = place(client, keys, 5, quantity="many")
    assert r.status_code == 422 and "body.order_placed.order.items.0.quantity" in r.text
    r = event(client, keys, "teleported", "t1", user_id="u1")
    assert r.status_code == 422 and "type" in r.json()["message"]
    r = place(client, keys, -3)
    assert r.status_code == 422 and "order.order_id" in r.json()["message"]
    r = client.get("/v1/users/" + "x" * 65 + "/offer", headers=h(keys))
    assert r.status_code == 422 and "user_id" in r.json()["message"]


def test_unknown_ids_are_404(client, keys):
    assert confirm(client, keys, "no-such-offer").status_code == 404
    r = event(client, keys, "payment_failed", "p9", order_id=999)
    assert r.status_code == 404 and r.json()["code"] == "unknown_order"


def test_a_huge_body_is_413(client, keys):
    r = client.post(
        "/v1/events",
        content=b"[" + b"1," * 200_000 + b"1]",
        headers=h(keys, **{"Content-Type": "application/json"}),
    )
    assert r.status_code == 413


# --- health ---------------------------------------------------------------------------------


def _offers_counted(client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('cadence_offers_total{outcome="offer"}'):
            return float(line.split()[-1])
    return 0.0


def test_health_readiness_and_metrics(client, keys, service):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["champion"] == "v3"
    # Feast switches prometheus_client to its multiprocess values on import, which a process's
    # registries share by name: count the difference this request makes.
    before = _offers_counted(client)
    offer(client, keys)
    assert _offers_counted(client) == before + 1
    body = client.get("/metrics").text
    assert 'route="/v1/users/{user_id}/offer"' in body and "u1" not in body
    service.champion = lambda: None
    assert client.get("/readyz").status_code == 503
