package config

import (
	"crypto/sha256"
	"encoding/hex"
)

// Hash identifies the effective configuration: the first 12 hex digits of
// the SHA-256 of String(), which is what `fleetd check-config` prints after
// its header line. Two fleetd instances with the same hash run the same
// config; secrets take no part in it (String masks them), so a rotated
// password or token keeps the hash, and the hash gives nothing of them away.
func (c *Config) Hash() string {
	sum := sha256.Sum256([]byte(c.String()))
	return hex.EncodeToString(sum[:6])
}
