-- Login sessions of the console's pages, kept on the server: the cookie
-- holds a random token, this table only its SHA-256 (a copy of the table
-- opens no session). Logout deletes the row, so a session ends for good.
-- depends: 0001_initial

CREATE TABLE console_sessions (
    token_sha256     text PRIMARY KEY,
    username         text NOT NULL,
    csrf_token       text NOT NULL,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
