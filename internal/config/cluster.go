package config

import (
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fleetd/fleetd/internal/secret"
)

// Cluster turns on slot leases between replicas sharing a PostgreSQL ledger
// (DESIGN.md, "The ledger, and running more than one replica"). Nil when
// the config has no cluster section.
type Cluster struct {
	// Slots is the number of location slots; every replica must agree.
	Slots      int           `yaml:"slots"`
	LeaseTTL   time.Duration `yaml:"lease_ttl"`
	RenewEvery time.Duration `yaml:"renew_every"`
	// ReplicaID names this replica in the lease table; "" means the
	// hostname, resolved when the daemon starts.
	ReplicaID string `yaml:"replica_id,omitempty"`
}

// DefaultCluster returns a cluster section with every default filled in.
func DefaultCluster() Cluster {
	return Cluster{Slots: 64, LeaseTTL: 15 * time.Second, RenewEvery: 5 * time.Second}
}

// UnmarshalYAML fills in the defaults before decoding, so an absent key gets
// its default and `cluster: {}` is a cluster with every default.
func (c *Cluster) UnmarshalYAML(n *yaml.Node) error {
	type plain Cluster
	*c = DefaultCluster()
	return n.Decode((*plain)(c))
}

// DefaultHistoryRetention is how long the PostgreSQL ledger keeps its
// command history.
const DefaultHistoryRetention = 90 * 24 * time.Hour

// LedgerIsPostgres reports whether remediation.ledger names a PostgreSQL
// database (postgres:// or postgresql://) rather than a bbolt file.
func (r *Remediation) LedgerIsPostgres() bool {
	return strings.HasPrefix(r.Ledger, "postgres://") || strings.HasPrefix(r.Ledger, "postgresql://")
}

// LedgerPassword is the PostgreSQL password read from
// remediation.ledger_password_file (zero without it).
func (r *Remediation) LedgerPassword() secret.String { return r.ledgerPassword }

// RedactedLedger is remediation.ledger safe for logs and pages: a
// PostgreSQL DSN loses its password.
func (r *Remediation) RedactedLedger() string { return redactDSN(r.Ledger) }

func redactDSN(dsn string) string {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://<unparsable DSN>"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// sslModes are libpq's sslmode values, which pgx honours.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

func (r *Remediation) validateLedger(p *problems, c *Cluster, sendTimeout time.Duration) {
	if !r.LedgerIsPostgres() {
		if r.LedgerPasswordFile != "" {
			p.addf("remediation.ledger_password_file", "only for a PostgreSQL ledger (postgres://…)")
		}
		if c != nil {
			p.addf("cluster", "needs a PostgreSQL ledger (remediation.ledger: postgres://…); a bbolt file serves one replica")
		}
		return
	}
	positive(p, "remediation.history_retention", r.HistoryRetention)
	// Never echo the DSN or url.Parse's error: both may hold the password.
	u, err := url.Parse(r.Ledger)
	if err != nil || u.Host == "" {
		p.addf("remediation.ledger", "not a valid postgres://user@host/db URL (%s)", redactDSN(r.Ledger))
	} else {
		if _, has := u.User.Password(); has && r.LedgerPasswordFile != "" {
			p.addf("remediation.ledger", "a password in the URL and remediation.ledger_password_file are mutually exclusive")
		}
		if m := u.Query().Get("sslmode"); m != "" && !contains(sslModes, m) {
			p.addf("remediation.ledger", "sslmode must be one of %s, got %q", strings.Join(sslModes, ", "), m)
		}
	}
	if c == nil {
		return
	}
	if c.Slots < 1 || c.Slots > 4096 {
		p.addf("cluster.slots", "must be between 1 and 4096, got %d", c.Slots)
	}
	positive(p, "cluster.lease_ttl", c.LeaseTTL)
	positive(p, "cluster.renew_every", c.RenewEvery)
	if c.LeaseTTL > 0 && c.RenewEvery > 0 && 2*c.RenewEvery > c.LeaseTTL {
		p.addf("cluster.renew_every", "must be at most half of cluster.lease_ttl (%s), so one lost renewal does not lose the lease; got %s",
			formatDuration(c.LeaseTTL), formatDuration(c.RenewEvery))
	}
	if c.LeaseTTL > 0 && sendTimeout >= c.LeaseTTL {
		p.addf("cluster.lease_ttl", "must be longer than bikeep.request_timeout (%s), which bounds a command's send: a lease must outlive the send it fences; got %s",
			formatDuration(sendTimeout), formatDuration(c.LeaseTTL))
	}
	if len(c.ReplicaID) > 128 {
		p.addf("cluster.replica_id", "must be at most 128 bytes, got %d", len(c.ReplicaID))
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
