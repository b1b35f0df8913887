"""The store's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them.

Table definitions are schema, not state: nothing here connects to anything.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

windows = Table(
    "windows",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("model_version", String(200), primary_key=True),
    Column("window_size_ms", BigInteger, primary_key=True),
    Column("window_start_ms", BigInteger, primary_key=True),
    Column("events", BigInteger, nullable=False),
    Column("late_events", BigInteger, nullable=False),
    Column("first_ts_ms", BigInteger),
    Column("last_ts_ms", BigInteger),
    Column("summary", LargeBinary, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# what each flush summarised, one row per (flush, window) (migration 0010): reads merge a
# window's row above with its parts in id order; a commit folds many parts into the row
window_parts = Table(
    "window_parts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("model_version", String(200), nullable=False),
    Column("window_size_ms", BigInteger, nullable=False),
    Column("window_start_ms", BigInteger, nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("late_events", BigInteger, nullable=False),
    Column("first_ts_ms", BigInteger),
    Column("last_ts_ms", BigInteger),
    Column("summary", LargeBinary, nullable=False),
    Index("ix_window_parts_window", "model", "model_version", "window_size_ms", "window_start_ms"),
)

# windows a read found corrupt, moved aside by housekeeping (migration 0014): every row
# of the window (its base, part_id null, and its parts) as it was stored, so reads stop
# paying for it and an operator can still look; never deleted by watchkeeper
set_aside_windows = Table(
    "set_aside_windows",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("model_version", String(200), nullable=False),
    Column("window_size_ms", BigInteger, nullable=False),
    Column("window_start_ms", BigInteger, nullable=False),
    Column("part_id", BigInteger),
    Column("corrupt", Boolean, nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("late_events", BigInteger, nullable=False),
    Column("first_ts_ms", BigInteger),
    Column("last_ts_ms", BigInteger),
    Column("summary", LargeBinary, nullable=False),
    Column("reason", String(500), nullable=False),
    Column("set_aside_at", DateTime(timezone=True), nullable=False),
    Index("ix_set_aside_windows_model", "model"),
)

consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("group_id", String(255), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# per partition and model: how far its event time got (migration 0008; see watermarks.py)
partition_watermarks = Table(
    "partition_watermarks",
    metadata,
    Column("group_id", String(255), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("event_ms", BigInteger, nullable=False),
    Column("seen_ms", BigInteger, nullable=False),
)

# per partition: where its consumer stands, written with the offsets by its owner
partition_status = Table(
    "partition_status",
    metadata,
    Column("group_id", String(255), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("role", String(20), nullable=False),
    Column("position", BigInteger),
    Column("end_offset", BigInteger),
    Column("owner", String(255), nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# per model: label joins made and pending rows expired, since the store was created
join_counts = Table(
    "join_counts",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("joined", BigInteger, nullable=False),
    Column("expired_predictions", BigInteger, nullable=False),
    Column("expired_labels", BigInteger, nullable=False),
)

feature_kinds = Table(
    "feature_kinds",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("feature", String(500), primary_key=True),
    Column("kind", String(20), nullable=False),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("reason", String(40), nullable=False),
    Column("detail", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    UniqueConstraint("topic", "partition", "offset", name="uq_quarantine_record"),
)

reference_profiles = Table(
    "reference_profiles",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("profile", LargeBinary, nullable=False),
)

pending_predictions = Table(
    "pending_predictions",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("request_id", String(255), primary_key=True),
    Column("model_version", String(200), nullable=False),
    Column("window_start_ms", BigInteger, nullable=False),
    Column("ts_ms", BigInteger, nullable=False, index=True),
    Column("score", Float),
    Column("predicted", String(255)),
    Column("created_ms", BigInteger, nullable=False),
    # the prediction's segment labels, a JSON object (label_join._segment_texts); null:
    # stored before segments, or the model's windows do not split
    Column("segments", Text),
)

pending_labels = Table(
    "pending_labels",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("request_id", String(255), primary_key=True),
    Column("label", String(255), nullable=False),
    Column("value", Float),
    Column("ts_ms", BigInteger, nullable=False, index=True),
    Column("created_ms", BigInteger, nullable=False),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(64), nullable=False, index=True),
    Column("state", String(20), nullable=False),
    Column("policy", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("feature", String(500)),
    Column("metric", String(100), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("summary", Text, nullable=False),
    Column("members", Text, nullable=False),
    Column("opened_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("resolved_ms", BigInteger),
    Column("note", Text, nullable=False),
)

evaluations = Table(
    "evaluations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False, index=True),
    Column("policy", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("metric", String(100), nullable=False),
    Column("feature", String(500)),
    Column("value", Float),
    Column("warn", Float),
    Column("critical", Float),
    Column("resolve", Float),
    Column("decision", String(30), nullable=False),
    Column("severity", String(20)),
    Column("state", String(20), nullable=False),
    Column("n_current", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_evaluations_policy_at_ms", "policy", "at_ms"),
)

policy_states = Table(
    "policy_states",
    metadata,
    Column("policy", String(200), primary_key=True),
    Column("state", LargeBinary, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    # the last tick of the policy's schedule evaluated (event time), written with its
    # evaluations: the next run continues after it (migration 0008)
    Column("tick_ms", BigInteger),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(200), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(20), nullable=False, index=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("sent_ms", BigInteger),
    Column("last_error", Text, nullable=False),
)

channel_state = Table(
    "channel_state",
    metadata,
    Column("channel", String(200), primary_key=True),
    Column("fingerprint", String(64), primary_key=True),
    Column("state", Text, nullable=False),
)

silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("matchers", Text, nullable=False),
    Column("starts_ms", BigInteger, nullable=False),
    Column("ends_ms", BigInteger, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("comment", Text, nullable=False),
)

# shadow evaluation (migration 0007): per candidate and window, the comparison summary
shadow_windows = Table(
    "shadow_windows",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("candidate", String(200), primary_key=True),
    Column("window_size_ms", BigInteger, primary_key=True),
    Column("window_start_ms", BigInteger, primary_key=True),
    Column("rows", BigInteger, nullable=False),
    Column("stats", LargeBinary, nullable=False),
)

# how far shadow evaluation got per partition, committed with the summaries it produced
shadow_offsets = Table(
    "shadow_offsets",
    metadata,
    Column("group_id", String(200), primary_key=True),
    Column("topic", String(400), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)

# per candidate: active or disabled (and why), and the latest promotion decision
shadow_candidates = Table(
    "shadow_candidates",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("candidate", String(200), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("info", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

shadow_decisions = Table(
    "shadow_decisions",
    metadata,
    Column("policy", String(200), primary_key=True),
    Column("candidate", String(200), primary_key=True),
    Column("decision", String(20), nullable=False),
    Column("reasons", Text, nullable=False),
    Column("table", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
)

# secrets the daemon generates for itself (migration 0008): the report-link signing key
store_secrets = Table(
    "store_secrets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

# live A/B comparisons between versions (migration 0011): per policy and version pair,
# the experiment's start, the folded roll-up of its settled windows, the narrowed
# intervals and the latest look (daemon/checks/ab_state.py)
ab_comparisons = Table(
    "ab_comparisons",
    metadata,
    Column("policy", String(200), primary_key=True),
    Column("baseline", String(200), primary_key=True),
    Column("candidate", String(200), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("since_ms", BigInteger, nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("last", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    # the policy's pair in force (migration 0012): one per policy, kept here so a restart
    # or a failover knows it without a look
    Column("in_force", Boolean, nullable=False, server_default=false()),
)

# when each version of a model was first seen and how many events it had (migration
# 0012), recorded by the A/B looks and untouched by retention: ``compare: latest`` ranks
# versions by it (daemon/checks/ab_store.py)
ab_versions = Table(
    "ab_versions",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("version", String(200), primary_key=True),
    Column("first_seen_ms", BigInteger, nullable=False),
    Column("events", BigInteger, nullable=False),
)
