-- Verdicts indexed from `risk-verdicts` (detectors/verdicts.py): a verdict
-- may be read before its alert (two topics, two partitions' orders), so it
-- no longer references the alerts table; it carries its rule for the
-- per-rule precision and is purged by its own time.
-- depends: 0002_sessions

ALTER TABLE verdicts DROP CONSTRAINT IF EXISTS verdicts_alert_id_fkey;
ALTER TABLE verdicts ADD COLUMN rule_id text NOT NULL DEFAULT '';
ALTER TABLE verdicts ADD COLUMN body jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX verdicts_by_rule ON verdicts (rule_id, alert_id, decided_at DESC);
