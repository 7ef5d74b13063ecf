package store

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpenExisting: whatever bytes sit in an existing ledger file, OpenBolt
// either opens a valid ledger or refuses with an error naming the file,
// never panics, and never changes a file it refused.
func FuzzOpenExisting(f *testing.F) {
	good := goodLedger(f)
	f.Add([]byte{})
	f.Add(good[:100])
	f.Add(good[:len(good)/2])
	f.Add(good)
	f.Add([]byte("hello"))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "l.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := OpenBolt(path)
		if err == nil {
			_ = l.Close()
			return
		}
		if !bytes.Contains([]byte(err.Error()), []byte(path)) {
			t.Fatalf("error %q does not name the file", err)
		}
		after, rerr := os.ReadFile(path)
		if rerr != nil || !bytes.Equal(after, b) {
			t.Fatalf("a refused file was changed (%v)", rerr)
		}
	})
}
