-- The remediation ledger. Each record is stored whole as its JSON (the same
-- JSON the bbolt ledger holds, so both stores validate one shape), with the
-- columns that gates, indexes and operators query pulled out beside it.
-- Keys and values are bytea: the ledger's composite keys separate their
-- parts with NUL, and vendor strings may hold one, which neither text nor
-- jsonb can store (the query columns get U+FFFD instead). For ad-hoc
-- queries: convert_from(value, 'UTF8')::jsonb.
CREATE TABLE remediation_pause (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    value bytea NOT NULL
);

CREATE TABLE remediation_episodes (
    key         bytea PRIMARY KEY,
    device_id   text NOT NULL,
    location_id text NOT NULL,
    fault       text NOT NULL,
    attempts    integer NOT NULL,
    value       bytea NOT NULL
);

CREATE TABLE remediation_devices (
    device_id text PRIMARY KEY,
    last_send timestamptz NOT NULL,
    value     bytea NOT NULL
);

CREATE TABLE remediation_commands (
    key         bytea PRIMARY KEY,
    device_id   text NOT NULL,
    location_id text NOT NULL,
    fault       text NOT NULL,
    attempt     integer NOT NULL,
    phase       text NOT NULL,
    sent_at     timestamptz NOT NULL,
    value       bytea NOT NULL
);
CREATE INDEX remediation_commands_in_flight ON remediation_commands (device_id) WHERE phase <> 'done';

CREATE TABLE remediation_storms (
    scope text PRIMARY KEY,
    value bytea NOT NULL
);

-- Append-only history: every state a command passed through, with the
-- database time it was recorded and the replica that recorded it. Pruned by
-- remediation.history_retention.
CREATE TABLE remediation_history (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    replica     text NOT NULL,
    device_id   text NOT NULL,
    location_id text NOT NULL,
    fault       text NOT NULL,
    attempt     integer NOT NULL,
    phase       text NOT NULL,
    result      text NOT NULL,
    command_id  text NOT NULL,
    value       bytea NOT NULL
);
CREATE INDEX remediation_history_at ON remediation_history (at);
CREATE INDEX remediation_history_device ON remediation_history (device_id, at);
