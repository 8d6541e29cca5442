-- schema/005_telemetry.sql - what the telemetry write-behind needs beyond 002: the LwM2M type of
-- each value (so the API returns it in the shape of /values), a ledger of committed batches (a
-- batch re-sent after a connection loss whose commit was not seen is applied at most once), and
-- the partition maintenance the daemon runs: daily partitions telemetry_pYYYYMMDD (UTC days)
-- created ahead, and whole partitions past the retention dropped.
ALTER TABLE telemetry ADD COLUMN type text;

CREATE TABLE telemetry_batches (
    id  bigint      PRIMARY KEY,
    at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telemetry_batches_at ON telemetry_batches (at);

-- Creates the partitions of today .. today + ahead_days (UTC) that do not exist; with
-- retention_s > 0 drops the daily partitions whose whole range is older than now() - retention_s,
-- deletes such rows from the default partition, and forgets batch ids older than two days.
-- Returns the number of partitions dropped. A partition that cannot be created (the default
-- partition already holds rows of that day) is skipped with a notice: those rows stay in default.
CREATE FUNCTION lwm2md_telemetry_maintain(ahead_days integer, retention_s bigint)
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    today   date := (now() AT TIME ZONE 'UTC')::date;
    d       date;
    part    text;
    r       record;
    dropped integer := 0;
    cutoff  timestamptz;
BEGIN
    FOR i IN 0 .. greatest(ahead_days, 0) LOOP
        d := today + i;
        part := 'telemetry_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE TABLE %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                               part, d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
            EXCEPTION WHEN others THEN
                RAISE NOTICE 'telemetry partition % not created: %', part, SQLERRM;
            END;
        END IF;
    END LOOP;
    IF retention_s > 0 THEN
        cutoff := now() - make_interval(secs => retention_s);
        FOR r IN SELECT c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
                  WHERE h.inhparent = 'telemetry'::regclass
                    AND c.relname ~ '^telemetry_p[0-9]{8}$' ORDER BY c.relname LOOP
            IF ((to_date(substr(r.relname, 12), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC')
                   <= cutoff THEN
                EXECUTE format('DROP TABLE %I', r.relname);
                dropped := dropped + 1;
            END IF;
        END LOOP;
        DELETE FROM telemetry_default WHERE at < cutoff;
    END IF;
    DELETE FROM telemetry_batches WHERE at < now() - interval '2 days';
    RETURN dropped;
END
$fn$;
