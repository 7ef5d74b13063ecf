-- Slot leases: one row per slot, plus slot -1 for the dedicated COPRI slot.
-- expires_at is always computed with the database's now(), never a replica's
-- clock. epoch grows by one every time a slot changes hands: it is the
-- fencing token an attempt is recorded under.
CREATE TABLE cluster_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE cluster_replicas (
    replica_id text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE TABLE cluster_leases (
    slot       integer PRIMARY KEY,
    holder     text NOT NULL DEFAULT '',
    epoch      bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity',
    changed_at timestamptz NOT NULL DEFAULT now()
);
