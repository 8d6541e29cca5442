-- schema/003_registrations_state.sql - what the write-behind store keeps of a registration beyond
-- 002: the announced objects as the API shows them (restore rebuilds the list from them), the
-- profile id and the security mode it arrived with. Registration ids name a slot of the shard
-- that issued them and are reused after the registration is gone: not unique across rows that a
-- batch has yet to delete, so the constraint becomes a plain index.
ALTER TABLE registrations
    ADD COLUMN objects       jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN profile_id    text,
    ADD COLUMN security_mode text  NOT NULL DEFAULT 'nosec';
ALTER TABLE registrations DROP CONSTRAINT registrations_reg_id_key;
CREATE INDEX registrations_reg_id ON registrations (reg_id);
