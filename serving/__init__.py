"""The merge service: offers to order early, the shopper's explicit opt-in, free cancellation,
exit conditions, and consolidation into fewer, fuller shipments.

`main.create_app(Service)` is the FastAPI app; `flows.steps.serving` builds the `Service` from
the workspace (database, online scores, rules). Its state is in SQL (`_tables`, migrated by
Alembic), every change appended to an audit log the database keeps append-only. The pure parts
carry the decisions: who is offered what (`_rules`), the tariff learned from shipments
(`_tariff`), the shipment plan (`_consolidate`), and the simulated campaign and its read-out
(`_campaign`, `_readout`). Nothing is imported here, so `flows.conf` can read
`conf/serving.yaml` into `_config.ServingConf` without loading the web stack.
"""
