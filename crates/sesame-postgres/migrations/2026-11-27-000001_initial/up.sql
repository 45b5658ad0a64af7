-- Sesame's durable state. Every code, link token, client secret, authorization code and
-- refresh/opaque token is stored only as an HMAC-SHA-256 (bytea, 32 bytes); outbox bodies are
-- AES-256-GCM sealed by the flows. No column ever holds one of those secrets in the clear.

CREATE TABLE connections (
    name               text PRIMARY KEY,
    strategy           text NOT NULL CHECK (strategy IN ('email', 'sms')),
    code_length        integer NOT NULL CHECK (code_length BETWEEN 4 AND 40),
    code_lifetime_secs integer NOT NULL CHECK (code_lifetime_secs BETWEEN 60 AND 600),
    disable_signup     boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE clients (
    client_id       text PRIMARY KEY,
    name            text NOT NULL,
    app_type        text NOT NULL CHECK (app_type IN ('native', 'spa', 'regular_web', 'non_interactive')),
    auth_method     text NOT NULL
                    CHECK (auth_method IN ('none', 'client_secret_post', 'client_secret_basic', 'private_key_jwt')),
    secret_hash     bytea CHECK (secret_hash IS NULL OR length(secret_hash) = 32),
    connections     text[] NOT NULL DEFAULT '{}',
    callbacks       text[] NOT NULL DEFAULT '{}',
    allowed_origins text[] NOT NULL DEFAULT '{}',
    grant_types     text[] NOT NULL DEFAULT '{}',
    -- PEM or JWK public keys for private_key_jwt.
    public_keys     text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- CORS preflights ask "does any client allow this origin?".
CREATE INDEX clients_allowed_origins ON clients USING gin (allowed_origins);

-- One user per (connection, normalised identifier): first logins that race resolve through
-- ON CONFLICT on this key.
CREATE TABLE users (
    user_id         text PRIMARY KEY,
    connection      text NOT NULL,
    identifier_kind text NOT NULL CHECK (identifier_kind IN ('email', 'phone')),
    identifier      text NOT NULL,
    email_verified  boolean NOT NULL DEFAULT false,
    phone_verified  boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    last_login      timestamptz,
    logins_count    bigint NOT NULL DEFAULT 0,
    UNIQUE (connection, identifier)
);

-- At most one challenge per (client, connection, identifier): a new start overwrites the row,
-- which is what makes every earlier code useless.
CREATE TABLE challenges (
    client_id       text NOT NULL,
    connection      text NOT NULL,
    identifier_kind text NOT NULL CHECK (identifier_kind IN ('email', 'phone')),
    identifier      text NOT NULL,
    id              text NOT NULL,
    code_hash       bytea NOT NULL CHECK (length(code_hash) = 32),
    link_hash       bytea CHECK (link_hash IS NULL OR length(link_hash) = 32),
    send            text NOT NULL,
    auth_params     jsonb NOT NULL DEFAULT '{}',
    language        text,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    consumed_at     timestamptz,
    PRIMARY KEY (client_id, connection, identifier)
);

CREATE TABLE outbox (
    id          text PRIMARY KEY,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient   text NOT NULL,
    -- Sealed (encrypted) rendered message; emptied once the message is sent or ends.
    sealed      bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'dropped')),
    reason      text,
    attempts    integer NOT NULL DEFAULT 0,
    due_at      timestamptz NOT NULL,
    lease_until timestamptz,
    last_error  text,
    finished_at timestamptz
);
-- The claim query scans only pending messages, oldest first.
CREATE INDEX outbox_pending ON outbox (created_at) WHERE status = 'pending';

CREATE TABLE authorization_codes (
    code_hash      bytea PRIMARY KEY,
    client_id      text NOT NULL,
    user_id        text NOT NULL,
    redirect_uri   text NOT NULL,
    scope          text NOT NULL,
    audience       text,
    nonce          text,
    code_challenge text,
    expires_at     timestamptz NOT NULL
);

CREATE TABLE opaque_tokens (
    token_hash bytea PRIMARY KEY,
    client_id  text NOT NULL,
    user_id    text NOT NULL,
    scope      text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX opaque_tokens_expires_at ON opaque_tokens (expires_at);

CREATE TABLE refresh_families (
    family_id  text PRIMARY KEY,
    revoked_at timestamptz
);

CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    family_id  text NOT NULL REFERENCES refresh_families (family_id) ON DELETE CASCADE,
    client_id  text NOT NULL,
    user_id    text NOT NULL,
    scope      text NOT NULL,
    audience   text,
    expires_at timestamptz NOT NULL,
    spent      boolean NOT NULL DEFAULT false
);

CREATE TABLE signing_keys (
    kid          text PRIMARY KEY,
    alg          text NOT NULL,
    -- Sealed by its owner with the key-encryption key before it reaches the store.
    private_key  bytea NOT NULL,
    public_jwk   jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    state        text NOT NULL CHECK (state IN ('active', 'retiring', 'retired')),
    retire_at    timestamptz
);
-- Exactly one key signs.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((state)) WHERE state = 'active';

CREATE TABLE audit_events (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL,
    kind       text NOT NULL,
    client_id  text,
    connection text,
    identifier text,
    user_id    text,
    ip         text,
    detail     text
);
CREATE INDEX audit_events_at ON audit_events (at DESC);
