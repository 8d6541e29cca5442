-- schema/006_registrations_write_behind.sql - the write-behind store (server/store/store.c) deletes
-- and upserts registrations by endpoint only (the primary key); nothing looks rows up by
-- registration id. Its index cost every write an extra index insertion (measured: two pipelined
-- writers, 200 k rows, upsert 46 k -> 60 k rows/s), so it goes.
DROP INDEX IF EXISTS registrations_reg_id;
