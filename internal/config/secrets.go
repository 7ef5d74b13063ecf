package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fleetd/fleetd/internal/secret"
)

// maxSecretFileBytes bounds a secret file: a credential is short, and a
// mistyped path must not read a log file into memory.
const maxSecretFileBytes = 64 << 10

// resolveSecrets checks that each secret comes from one place (value or
// file) and reads the *_file ones. Validate checks the rest (which kinds of
// credentials, and that one is present) on the resolved values.
func (c *Config) resolveSecrets(baseDir string) []error {
	var errs []error
	b := &c.Bikeep
	errs = appendErr(errs, resolveSecret(&b.ClientSecret, b.ClientSecretFile, "bikeep", "client_secret", baseDir))
	errs = appendErr(errs, resolveSecret(&b.Token, b.TokenFile, "bikeep", "token", baseDir))
	// The client re-reads the token file when the token is rejected (it is
	// rotated by whoever issues it), so it needs the path, anchored here;
	// TokenFile itself stays as written.
	if b.TokenFile != "" {
		b.tokenPath = b.TokenFile
		if !filepath.IsAbs(b.tokenPath) {
			b.tokenPath = filepath.Join(baseDir, b.tokenPath)
		}
	}
	for i := range c.Copri {
		o := &c.Copri[i]
		errs = appendErr(errs, resolveSecret(&o.Password, o.PasswordFile, fmt.Sprintf("copri[%d]", i), "password", baseDir))
	}
	r := &c.Remediation
	errs = appendErr(errs, resolveSecret(&r.ledgerPassword, r.LedgerPasswordFile, "remediation", "ledger_password", baseDir))
	return errs
}

func appendErr(errs []error, err error) []error {
	if err != nil {
		errs = append(errs, err)
	}
	return errs
}

func resolveSecret(dst *secret.String, file, path, key, baseDir string) error {
	if file == "" {
		return nil
	}
	if !dst.IsZero() {
		return &keyError{path: path, about: []string{path + "." + key + "_file"}, err: fmt.Errorf("%s and %s_file are mutually exclusive", key, key)}
	}
	if !filepath.IsAbs(file) {
		file = filepath.Join(baseDir, file)
	}
	v, err := readSecretFile(file)
	if err != nil {
		return &keyError{path: path + "." + key + "_file", err: err}
	}
	*dst = secret.String(v)
	return nil
}

// readSecretFile returns the file's content without trailing line breaks.
// Its errors carry the path, never the content.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	// A FIFO or device (say /dev/stdin) could block start-up forever.
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxSecretFileBytes {
		return "", fmt.Errorf("%s: larger than %d KiB", path, maxSecretFileBytes>>10)
	}
	v := strings.TrimRight(string(data), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s: %w", path, errEmptySecret)
	}
	return v, nil
}

var errEmptySecret = errors.New("file is empty")
