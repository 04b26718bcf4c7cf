-- Undoes 0004_approvals: pending requests are dropped (nothing was published for them).
DROP TABLE IF EXISTS approval_requests;
