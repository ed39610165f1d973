"""Routing: one stock view per node and SKU, waves' running loads, routed orders and the
units they hold.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 07:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stock",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("on_hand >= 0", name="ck_stock_on_hand"),
        sa.CheckConstraint("reserved >= 0", name="ck_stock_reserved"),
        sa.PrimaryKeyConstraint("node_id", "sku"),
    )
    op.create_index("ix_stock_sku", "stock", ["sku"])
    op.create_table(
        "wave_loads",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("wave_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("parcels", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "wave_at"),
    )
    op.create_table(
        "routes",
        sa.Column("order_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("delivery", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("routed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promised_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_table(
        "reservations",
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("wave_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["routes.order_id"]),
        sa.PrimaryKeyConstraint("order_id", "node_id", "sku"),
    )


def downgrade() -> None:
    op.drop_table("reservations")
    op.drop_table("routes")
    op.drop_table("wave_loads")
    op.drop_index("ix_stock_sku", table_name="stock")
    op.drop_table("stock")
