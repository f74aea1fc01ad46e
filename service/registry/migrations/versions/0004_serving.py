"""Labels pointing at versions; per-model dynamic batching settings.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("batching", sa.JSON, nullable=True))
    op.create_table(
        "labels",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("model_id", sa.String(32), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model_id", "label", name="uq_labels_model_label"),
    )
    op.create_index("ix_labels_tenant_id", "labels", ["tenant_id"])
    op.create_index("ix_labels_model_id", "labels", ["model_id"])


def downgrade() -> None:
    op.drop_table("labels")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("batching")
