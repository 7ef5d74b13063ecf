package store_test

import (
	"path/filepath"
	"testing"

	"github.com/fleetd/fleetd/internal/remediate/store"
	"github.com/fleetd/fleetd/internal/remediate/store/storetest"
)

func TestBoltContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "remediation.db")
		return func(t *testing.T) store.Store {
			t.Helper()
			b, err := store.OpenBolt(path)
			if err != nil {
				t.Fatalf("OpenBolt: %v", err)
			}
			return b
		}
	})
}
