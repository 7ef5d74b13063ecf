package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("lf", "s3cret\n")
	write("crlf", "s3cret\r\n")
	write("many", "s3cret\n\n\n")
	write("inner", " spaced  s3cret\twith tab \n")
	write("blank", "\r\n")
	write("zero", "")
	write("big", strings.Repeat("x", 64<<10+1))
	abs := write("abs", "absolute-secret")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	write("sub/nested", "nested-secret\n")

	tests := []struct {
		file, want, err string
	}{
		{file: "lf", want: "s3cret"},
		{file: "crlf", want: "s3cret"},
		{file: "many", want: "s3cret"},
		{file: "inner", want: " spaced  s3cret\twith tab "},
		{file: abs, want: "absolute-secret"},
		{file: "sub/nested", want: "nested-secret"},
		{file: "./sub/../lf", want: "s3cret"},
		{file: "blank", err: "bikeep.token_file: " + filepath.Join(dir, "blank") + ": file is empty (line 2)"},
		{file: "zero", err: "bikeep.token_file: " + filepath.Join(dir, "zero") + ": file is empty (line 2)"},
		{file: "big", err: "bikeep.token_file: " + filepath.Join(dir, "big") + ": larger than 64 KiB (line 2)"},
		{file: "missing", err: "bikeep.token_file: open " + filepath.Join(dir, "missing") + ": no such file or directory (line 2)"},
		{file: "sub", err: "bikeep.token_file: " + filepath.Join(dir, "sub") + ": not a regular file (line 2)"},
		{file: "/dev/null", err: "bikeep.token_file: /dev/null: not a regular file (line 2)"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := Parse([]byte("bikeep:\n  token_file: '"+tt.file+"'\n"), dir)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Parse error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Bikeep.Token.Reveal(); got != tt.want {
				t.Errorf("token = %q, want %q", got, tt.want)
			}
			if cfg.Bikeep.TokenFile != tt.file {
				t.Errorf("token_file = %q, want it as written (%q)", cfg.Bikeep.TokenFile, tt.file)
			}
			want := tt.file
			if !filepath.IsAbs(want) {
				want = filepath.Join(dir, want)
			}
			if got := cfg.Bikeep.TokenPath(); got != want {
				t.Errorf("TokenPath() = %q, want %q (resolved against the config's directory)", got, want)
			}
			if s := cfg.String(); strings.Contains(s, tt.want) {
				t.Errorf("String() shows the secret:\n%s", s)
			}
		})
	}
}

func TestSecretFilesForEveryKey(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{"cs": "client-secret-value\n", "pw1": "password-one\n", "pw2": "password-two"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := Parse([]byte(`
bikeep: {client_id: id, client_secret_file: cs}
copri:
  - {name: a, primary_url: "https://p", operator_url: "https://o", merchant_id: m, user_id: u, password_file: pw1}
  - {name: b, primary_url: "https://p", operator_url: "https://o", merchant_id: m, user_id: u, password_file: `+filepath.Join(dir, "pw2")+`}
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bikeep.ClientSecret.Reveal() != "client-secret-value" || cfg.Copri[0].Password.Reveal() != "password-one" ||
		cfg.Copri[1].Password.Reveal() != "password-two" {
		t.Errorf("secrets not read: %q %q %q", cfg.Bikeep.ClientSecret.Reveal(), cfg.Copri[0].Password.Reveal(), cfg.Copri[1].Password.Reveal())
	}
	// Errors name the key and path, never the content of a file.
	_, err = Parse([]byte("bikeep: {client_id: id, client_secret_file: cs, client_secret: x}\n"), dir)
	if want := "bikeep: client_secret and client_secret_file are mutually exclusive (line 1)"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
	_, err = Parse([]byte("bikeep: {client_id: id, client_secret_file: cs}\ncopri: [{name: 'A', password_file: pw1}]\n"), dir)
	if err == nil || strings.Contains(err.Error(), "client-secret-value") || strings.Contains(err.Error(), "password-one") {
		t.Errorf("error = %v", err)
	}
}
