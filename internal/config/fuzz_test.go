package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary documents to Parse: it must not panic, must not
// return both a config and an error, and a config it accepts must render
// with String() into a document it accepts again.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yml")
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, "example.yml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("bikeep: {token: t}\ncopri: [&a {name: x}, *a, {<<: *a}]\n"))
	f.Add([]byte("bikeep: {token: '${HOME:-x}$$'}\nremediation: {blackout: [{start: 'TZ=UTC', duration: 1h}]}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, dir)
		if err != nil {
			if cfg != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		out := cfg.String()
		if strings.HasPrefix(out, "# cannot render") {
			t.Fatalf("String() failed: %s", out)
		}
		if _, err := Parse([]byte(out), dir); err != nil && !strings.Contains(err.Error(), "_file") {
			t.Fatalf("String() output does not parse: %v\n%s", err, out)
		}
	})
}
