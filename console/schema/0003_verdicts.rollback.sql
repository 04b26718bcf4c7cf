-- Undoes 0003_verdicts: verdicts whose alert is gone go with the constraint.
DROP INDEX IF EXISTS verdicts_by_rule;
DELETE FROM verdicts v WHERE NOT EXISTS (SELECT 1 FROM alerts a WHERE a.alert_id = v.alert_id);
ALTER TABLE verdicts ADD CONSTRAINT verdicts_alert_id_fkey
    FOREIGN KEY (alert_id) REFERENCES alerts (alert_id) ON DELETE CASCADE;
ALTER TABLE verdicts DROP COLUMN body;
ALTER TABLE verdicts DROP COLUMN rule_id;
