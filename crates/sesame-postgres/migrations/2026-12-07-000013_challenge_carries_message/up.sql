-- One row per start (issue 13): the challenge row carries the message still to deliver and
-- the issuance's audit event, so a start writes one row in one table instead of three (the
-- challenge, an outbox row and an audit row).
--
-- The message: its id, channel, recipient, sealed (AES-256-GCM) body and times, and its
-- delivery state as the outbox table had it. `delivery` is NULL on a row without a message
-- (rows written before this migration). The sealed body is wiped (NULL) once the message is
-- sent, failed or dropped.
--
-- The event (`code_link_sent`): the audit listing reads it from the row while the row lives;
-- retention, deleting the row, moves it into audit_events, and so does a new start of the same
-- key overwriting it. An event that names a user is written to audit_events at once.
--
-- The outbox table stays, read and settled alongside, so that messages enqueued by replicas of
-- the previous release during a rolling upgrade are still delivered; a later release drops it.
-- Nullable columns without defaults: adding them rewrites nothing and running replicas of the
-- previous release keep working.
ALTER TABLE challenges
    ADD COLUMN message_id         text,
    ADD COLUMN channel            text CHECK (channel IN ('email', 'sms')),
    ADD COLUMN recipient          text,
    ADD COLUMN sealed             bytea,
    ADD COLUMN message_created_at timestamptz,
    ADD COLUMN message_expires_at timestamptz,
    ADD COLUMN delivery           text CHECK (delivery IN ('pending', 'sent', 'failed', 'dropped')),
    ADD COLUMN reason             text,
    ADD COLUMN sends              integer,
    ADD COLUMN due_at             timestamptz,
    ADD COLUMN lease_until        timestamptz,
    ADD COLUMN last_error         text,
    ADD COLUMN finished_at        timestamptz,
    ADD COLUMN event_at           timestamptz,
    ADD COLUMN event_kind         text,
    ADD COLUMN event_client_id    text,
    ADD COLUMN event_connection   text,
    ADD COLUMN event_identifier   text,
    ADD COLUMN event_ip           text,
    ADD COLUMN event_detail       text;
