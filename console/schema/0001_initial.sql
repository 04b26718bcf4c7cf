-- The console's first schema: the alert index, freezes and their releases,
-- control records, the audit log, verdicts, and records that could not be
-- indexed. Applied by yoyo-migrations (console/migrations.py) (`fraudstream console` runs it).
-- depends:

CREATE TABLE alerts (
    alert_id         text PRIMARY KEY,
    rule_id          text NOT NULL,
    rule_version     integer NOT NULL,
    severity         text NOT NULL,
    entity_type      text NOT NULL,
    entity_id        text NOT NULL,
    mode             text NOT NULL,
    ruleset_version  text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    detected_at      timestamptz NOT NULL,
    -- The console's own case state (later pages): never set by the indexer.
    status           text NOT NULL DEFAULT 'new'
                     CHECK (status IN ('new', 'assigned', 'closed')),
    assignee         text,
    verdict          text CHECK (verdict IN ('true_positive', 'false_positive', 'unsure')),
    body             jsonb NOT NULL,
    indexed_at       timestamptz NOT NULL DEFAULT now()
);
-- The queue: newest first, and each filter followed by the same order.
CREATE INDEX alerts_newest ON alerts (occurred_at DESC, alert_id DESC);
CREATE INDEX alerts_by_rule ON alerts (rule_id, occurred_at DESC);
CREATE INDEX alerts_by_severity ON alerts (severity, occurred_at DESC);
CREATE INDEX alerts_by_entity_type ON alerts (entity_type, occurred_at DESC);
CREATE INDEX alerts_by_mode ON alerts (mode, occurred_at DESC);
CREATE INDEX alerts_by_status ON alerts (status, occurred_at DESC);
-- The entity page.
CREATE INDEX alerts_by_entity ON alerts (entity_type, entity_id, occurred_at DESC);

CREATE TABLE freezes (
    freeze_id        text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('benefit', 'fund')),
    subject_type     text NOT NULL,
    subject_id       text NOT NULL,
    scope            text NOT NULL,
    rule_id          text NOT NULL,
    reason_alert_id  text NOT NULL,
    ruleset_version  text NOT NULL,
    issued_at        timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    -- A single-payout fund freeze holds one payout's value; others hold none.
    amount_minor     bigint,
    currency         text,
    state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'released')),
    release_id       text,
    body             jsonb NOT NULL,
    indexed_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((amount_minor IS NULL) = (currency IS NULL))
);
CREATE INDEX freezes_by_state ON freezes (state, kind, expires_at);
CREATE INDEX freezes_by_value ON freezes (state, kind, currency, amount_minor DESC);
CREATE INDEX freezes_by_subject ON freezes (subject_type, subject_id, issued_at DESC);
CREATE INDEX freezes_by_alert ON freezes (reason_alert_id);
CREATE INDEX freezes_issued ON freezes (issued_at);

-- `action: release` records of the freeze topics. A release may arrive
-- before its freeze (contract): it is kept here, and the freeze is marked
-- released whichever of the two is indexed second.
CREATE TABLE freeze_releases (
    release_id       text PRIMARY KEY,
    freeze_id        text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('benefit', 'fund')),
    release_type     text NOT NULL,
    reason_code      text NOT NULL,
    actor            text NOT NULL,
    reason           text NOT NULL,
    control_id       text,
    rule_id          text NOT NULL,
    issued_at        timestamptz NOT NULL,
    body             jsonb NOT NULL,
    indexed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX freeze_releases_by_freeze ON freeze_releases (freeze_id);
CREATE INDEX freeze_releases_issued ON freeze_releases (issued_at);

-- Records of `risk-control` (kill switch, rule modes, list entries, snoozes,
-- releases, breaker, rule sets), one row per control_id (their idempotency key).
CREATE TABLE control_records (
    control_id       text PRIMARY KEY,
    kind             text NOT NULL,
    record_key       text NOT NULL,
    actor            text NOT NULL,
    reason           text NOT NULL,
    issued_at        timestamptz NOT NULL,
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    body             jsonb NOT NULL,
    indexed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX control_records_by_key ON control_records (record_key, kafka_offset DESC);
CREATE INDEX control_records_by_kind ON control_records (kind, issued_at DESC);
CREATE INDEX control_records_issued ON control_records (issued_at);

-- Who did what, when and why: console actions, and every control record
-- (`idempotency_key` control:<control_id>), whoever published it.
CREATE TABLE audit_log (
    audit_id         bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    at               timestamptz NOT NULL,
    actor            text NOT NULL,
    action           text NOT NULL,
    reason           text NOT NULL DEFAULT '',
    target_type      text,
    target_id        text,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_newest ON audit_log (at DESC);
CREATE INDEX audit_log_by_actor ON audit_log (actor, at DESC);
CREATE INDEX audit_log_by_action ON audit_log (action, at DESC);
CREATE INDEX audit_log_by_target ON audit_log (target_type, target_id, at DESC);

CREATE TABLE verdicts (
    verdict_id       text PRIMARY KEY,
    alert_id         text NOT NULL REFERENCES alerts (alert_id) ON DELETE CASCADE,
    verdict          text NOT NULL CHECK (verdict IN ('true_positive', 'false_positive', 'unsure')),
    note             text NOT NULL DEFAULT '',
    actor            text NOT NULL,
    decided_at       timestamptz NOT NULL
);
CREATE INDEX verdicts_by_alert ON verdicts (alert_id, decided_at DESC);
CREATE INDEX verdicts_decided ON verdicts (decided_at);

-- Records the indexer could not use, kept whole (up to 64 KiB of the value,
-- with its size and SHA-256; the full value stays in its topic at that offset).
CREATE TABLE rejected_records (
    topic            text NOT NULL,
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    kafka_key        bytea,
    value            bytea,
    value_size       integer NOT NULL,
    value_sha256     text NOT NULL,
    value_truncated  boolean NOT NULL,
    error_kind       text NOT NULL,
    error_message    text NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
CREATE INDEX rejected_records_received ON rejected_records (received_at);
