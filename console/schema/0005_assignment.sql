-- Case assignment (console/assignment.py): an analyst takes an alert
-- (`assignee`, status `assigned`) or gives it back (no assignee, status
-- `new`). The columns are 0001's, owned by the console, never by the
-- indexer; these indexes serve the queue's "assigned to me" and
-- "unassigned" filters in the queue's order, as the other filters are.
-- depends: 0004_approvals

CREATE INDEX alerts_by_assignee ON alerts (assignee, occurred_at DESC, alert_id DESC)
    WHERE assignee IS NOT NULL;
CREATE INDEX alerts_unassigned ON alerts (occurred_at DESC, alert_id DESC)
    WHERE assignee IS NULL;
