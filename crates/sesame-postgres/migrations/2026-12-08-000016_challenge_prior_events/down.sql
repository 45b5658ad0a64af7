-- The events of replaced starts go to audit_events, where the previous release keeps them.
INSERT INTO audit_events (at, kind, client_id, connection, identifier, user_id, ip, detail)
SELECT (e->>'at')::timestamptz, e->>'kind', e->>'client_id', e->>'connection', e->>'identifier', NULL, e->>'ip',
    e->>'detail'
FROM challenges c, jsonb_array_elements(c.prior_events) e WHERE c.prior_events IS NOT NULL;
ALTER TABLE challenges DROP COLUMN prior_events;
