-- schema/004_ops_state.sql - what the operations engine keeps across restarts beyond 002:
-- desired observations as the API created them (several per path, composite ones with a path
-- list, attributes as given), and queued operations with the API's own ids and the whole request
-- (body, Execute arguments or attribute query, observation ids). Both name endpoints that need
-- not be provisioned devices (a NoSec device is known only by its registration), so the foreign
-- keys to devices go; operations take every kind the API has.
ALTER TABLE observations DROP CONSTRAINT observations_endpoint_fkey;
ALTER TABLE observations DROP CONSTRAINT observations_pkey;
ALTER TABLE observations
    ADD COLUMN id         bigint,
    ADD COLUMN paths      jsonb   NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN composite  boolean NOT NULL DEFAULT false,
    ADD COLUMN attrs      jsonb;
UPDATE observations SET id = nextval(pg_get_serial_sequence('operations', 'id'))
    WHERE id IS NULL;
ALTER TABLE observations ALTER COLUMN id SET NOT NULL;
ALTER TABLE observations ADD PRIMARY KEY (id);
CREATE INDEX observations_endpoint ON observations (endpoint);

ALTER TABLE operations DROP CONSTRAINT operations_endpoint_fkey;
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check CHECK (kind IN ('read', 'discover',
    'write', 'write-partial', 'execute', 'create', 'delete', 'write-attributes', 'observe',
    'observe-cancel', 'read-composite', 'write-composite'));
ALTER TABLE operations ADD COLUMN request jsonb NOT NULL DEFAULT '{}'::jsonb;
