-- Undoes 0005_assignment: the queue's assignment filters lose their indexes
-- (assignments themselves are 0001's columns and stay).
DROP INDEX IF EXISTS alerts_unassigned;
DROP INDEX IF EXISTS alerts_by_assignee;
