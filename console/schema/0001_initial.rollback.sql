-- Undoes 0001_initial: drops every console table (and its data).
DROP TABLE IF EXISTS rejected_records;
DROP TABLE IF EXISTS verdicts;
DROP TABLE IF EXISTS audit_log;
DROP TABLE IF EXISTS control_records;
DROP TABLE IF EXISTS freeze_releases;
DROP TABLE IF EXISTS freezes;
DROP TABLE IF EXISTS alerts;
