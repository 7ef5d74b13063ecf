-- The fleet-wide storm ratio across replicas: each replica publishes, after
-- every walk, the devices and faulty devices of the Up locations of each
-- slot it holds; the fleet's ratio is the sum over all slots. A slot's row
-- is overwritten by whoever holds it, so a slot that moves is never counted
-- twice.
CREATE TABLE cluster_slot_faults (
    slot       integer PRIMARY KEY,
    devices    integer NOT NULL,
    faulty     integer NOT NULL,
    replica    text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
