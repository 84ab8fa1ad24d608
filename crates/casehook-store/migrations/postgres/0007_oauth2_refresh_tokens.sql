-- Refresh tokens an OAuth 2.0 token endpoint rotated in, one per connection: a server that
-- rotates accepts only the newest, so it must outlive a restart and reach every process.
CREATE TABLE oauth2_refresh_tokens (
    connection_id       UUID PRIMARY KEY,
    workspace_id        UUID NOT NULL,
    -- Sealed JSON (context `connection:<id>:refresh-token`): the token, and the configured
    -- refresh token it descends from (a token configured since replaces it).
    token               BYTEA NOT NULL,
    updated_at          BIGINT NOT NULL
);
