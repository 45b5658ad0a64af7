-- Messages still on challenge rows go back to the outbox table, events to audit_events.
INSERT INTO outbox (id, channel, recipient, sealed, created_at, expires_at, status, reason, attempts, due_at,
    lease_until, last_error, finished_at)
SELECT message_id, channel, recipient, COALESCE(sealed, ''::bytea), message_created_at, message_expires_at, delivery,
    reason, sends, due_at, lease_until, last_error, finished_at
FROM challenges WHERE delivery IS NOT NULL AND delivery <> 'sent'
ON CONFLICT (id) DO NOTHING;
INSERT INTO audit_events (at, kind, client_id, connection, identifier, user_id, ip, detail)
SELECT event_at, event_kind, event_client_id, event_connection, event_identifier, NULL, event_ip, event_detail
FROM challenges WHERE event_at IS NOT NULL;
ALTER TABLE challenges
    DROP COLUMN message_id, DROP COLUMN channel, DROP COLUMN recipient, DROP COLUMN sealed,
    DROP COLUMN message_created_at, DROP COLUMN message_expires_at, DROP COLUMN delivery, DROP COLUMN reason,
    DROP COLUMN sends, DROP COLUMN due_at, DROP COLUMN lease_until, DROP COLUMN last_error, DROP COLUMN finished_at,
    DROP COLUMN event_at, DROP COLUMN event_kind, DROP COLUMN event_client_id, DROP COLUMN event_connection,
    DROP COLUMN event_identifier, DROP COLUMN event_ip, DROP COLUMN event_detail;
