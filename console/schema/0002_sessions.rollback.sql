-- Undo 0002_sessions: every open session ends.
DROP TABLE IF EXISTS console_sessions;
