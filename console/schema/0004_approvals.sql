-- Requests waiting for a second person (the two-person rule,
-- console/two_person.py): a large fund freeze's release, a rule set. The
-- record to publish is kept whole; it is published only when an approver
-- other than the requester approves. Console-owned state: the workers never
-- see a request, only the record an approval publishes.
-- depends: 0003_verdicts

CREATE TABLE approval_requests (
    request_id       text PRIMARY KEY,  -- from the form's token: a form sent twice is one request
    kind             text NOT NULL CHECK (kind IN ('release', 'ruleset')),
    target           text NOT NULL,     -- the freeze_id, or the ruleset_version
    summary          text NOT NULL DEFAULT '',
    requested_by     text NOT NULL,
    requested_at     timestamptz NOT NULL,
    reason           text NOT NULL,
    record           jsonb NOT NULL,    -- the control record's wire form
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'approved', 'rejected')),
    decided_by       text,
    decided_at       timestamptz,
    decision_reason  text NOT NULL DEFAULT '',
    CHECK ((state = 'pending') = (decided_by IS NULL)),
    CHECK (decided_by IS NULL OR decided_by <> requested_by)
);
CREATE INDEX approval_requests_by_state ON approval_requests (state, requested_at DESC);
CREATE INDEX approval_requests_by_target ON approval_requests (kind, target, requested_at DESC);
-- One pending release per freeze: a second request waits on the first
-- (rule sets may be proposed side by side; each approval publishes its own).
CREATE UNIQUE INDEX approval_requests_one_pending_release ON approval_requests (target)
    WHERE state = 'pending' AND kind = 'release';
