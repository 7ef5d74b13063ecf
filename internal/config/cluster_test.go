package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A PostgreSQL ledger and the cluster section: defaults, the rules that keep
// a lease longer than what it fences, and no password in any message.
func TestLedgerAndCluster(t *testing.T) {
	const base = "bikeep: {client_id: a, client_secret: b}\n"
	const pg = base + "remediation: {ledger: 'postgres://fleetd@db.example/fleetd?sslmode=verify-full'}\n"
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		check      func(t *testing.T, c *Config)
		wantErr    []string
	}{
		{name: "bbolt has no cluster", yaml: base, check: func(t *testing.T, c *Config) {
			if c.Cluster != nil || c.Remediation.LedgerIsPostgres() {
				t.Errorf("cluster = %+v, postgres = %v", c.Cluster, c.Remediation.LedgerIsPostgres())
			}
		}},
		{name: "postgres without cluster", yaml: pg, check: func(t *testing.T, c *Config) {
			if c.Cluster != nil || !c.Remediation.LedgerIsPostgres() || c.Remediation.HistoryRetention != 90*24*time.Hour {
				t.Errorf("cluster = %+v, retention %s", c.Cluster, c.Remediation.HistoryRetention)
			}
		}},
		{name: "empty cluster section takes the defaults", yaml: pg + "cluster: {}\n", check: func(t *testing.T, c *Config) {
			if c.Cluster == nil || *c.Cluster != DefaultCluster() {
				t.Errorf("cluster = %+v, want %+v", c.Cluster, DefaultCluster())
			}
			if c.Cluster.Slots != 64 || c.Cluster.LeaseTTL != 15*time.Second || c.Cluster.RenewEvery != 5*time.Second {
				t.Errorf("defaults = %+v", c.Cluster)
			}
		}},
		{name: "cluster set", yaml: pg + "cluster: {slots: 1, lease_ttl: 30s, renew_every: 10s, replica_id: a}\n", check: func(t *testing.T, c *Config) {
			if *c.Cluster != (Cluster{Slots: 1, LeaseTTL: 30 * time.Second, RenewEvery: 10 * time.Second, ReplicaID: "a"}) {
				t.Errorf("cluster = %+v", c.Cluster)
			}
		}},
		{name: "password from the environment", yaml: base + "remediation: {ledger: 'postgres://fleetd:${PGPW}@db/fleetd'}\n",
			env: map[string]string{"PGPW": "hunter2"}, check: func(t *testing.T, c *Config) {
				if !strings.Contains(c.Remediation.Ledger, "hunter2") {
					t.Errorf("ledger not expanded")
				}
				if s := c.String(); strings.Contains(s, "hunter2") {
					t.Errorf("String() shows the password:\n%s", s)
				}
			}},
		{name: "cluster needs postgres", yaml: base + "cluster: {}\n",
			wantErr: []string{"cluster: needs a PostgreSQL ledger"}},
		{name: "renew_every over half the ttl", yaml: pg + "cluster: {lease_ttl: 15s, renew_every: 8s}\n",
			wantErr: []string{"cluster.renew_every: must be at most half of cluster.lease_ttl (15s)"}},
		{name: "lease shorter than the send timeout", yaml: base + "bikeep: {client_id: a, client_secret: b, request_timeout: 20s}\nremediation: {ledger: 'postgres://h/db'}\ncluster: {lease_ttl: 15s}\n",
			wantErr: []string{"cluster.lease_ttl: must be longer than bikeep.request_timeout (20s)"}},
		{name: "slots out of range", yaml: pg + "cluster: {slots: 0}\n",
			wantErr: []string{"cluster.slots: must be between 1 and 4096, got 0"}},
		{name: "bad sslmode, password not echoed", yaml: base + "remediation: {ledger: 'postgres://u:hunter2@h/db?sslmode=maybe'}\n",
			wantErr: []string{`sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full, got "maybe"`}},
		{name: "password twice", yaml: base + "remediation: {ledger: 'postgres://u:hunter2@h/db', ledger_password_file: pw}\n",
			wantErr: []string{"remediation.ledger: a password in the URL and remediation.ledger_password_file are mutually exclusive"}},
		{name: "password file with bbolt", yaml: base + "remediation: {ledger_password_file: pw}\n",
			wantErr: []string{"remediation.ledger_password_file: only for a PostgreSQL ledger"}},
		{name: "retention must be positive", yaml: base + "remediation: {ledger: 'postgres://h/db', history_retention: 0s}\n",
			wantErr: []string{"remediation.history_retention: must be greater than 0"}},
		{name: "unknown cluster key", yaml: pg + "cluster: {slot: 3}\n", wantErr: []string{`cluster: unknown key "slot"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse([]byte(strings.Replace(tc.yaml, "bikeep: {client_id: a, client_secret: b}\nbikeep:", "bikeep:", 1)), dir)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v\nwant it to contain %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cret") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}
}

// The password file is read and kept out of String, which names the file.
func TestLedgerPasswordFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte("bikeep: {client_id: a, client_secret: b}\nremediation: {ledger: 'postgres://fleetd@h/db', ledger_password_file: pw}\ncluster: {replica_id: r1}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Remediation.LedgerPassword().Reveal(); got != "s3cret" {
		t.Errorf("password = %q", got)
	}
	s := cfg.String()
	if strings.Contains(s, "s3cret") || !strings.Contains(s, "ledger_password_file: pw") || !strings.Contains(s, "replica_id: r1") {
		t.Errorf("String():\n%s", s)
	}
	back, err := Parse([]byte(s), dir)
	if err != nil {
		t.Fatalf("String() does not parse back: %v", err)
	}
	if *back.Cluster != *cfg.Cluster || back.Remediation.LedgerPassword() != cfg.Remediation.LedgerPassword() {
		t.Errorf("round trip: %+v, want %+v", back.Cluster, cfg.Cluster)
	}
}
