-- The fleet-wide remediation.rate token bucket shared by replicas: one row,
-- refilled on the database clock whenever an attempt is reserved.
CREATE TABLE remediation_rate (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    tokens     double precision NOT NULL,
    updated_at timestamptz NOT NULL
);
