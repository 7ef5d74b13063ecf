package config

import (
	"fmt"
	"strings"
)

// expandEnv replaces ${NAME} and ${NAME:-default} in s with values from
// lookup, and $$ with a literal $. Any other $ is kept as it is, so a secret
// with a lone $ need not be escaped. The default is used when the variable is
// unset or empty, as in the shell; it is taken literally (no nesting).
// changed reports whether s held any reference or escape.
//
// Errors name the variable or quote only the reference's name, never a value.
func expandEnv(s string, lookup func(string) (string, bool)) (out string, changed bool, err error) {
	if !strings.Contains(s, "$") {
		return s, false, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			changed = true
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", false, fmt.Errorf(`unterminated "${" (write "$$" for a literal "$")`)
			}
			ref := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(ref, ":-")
			if !validEnvName(name) {
				return "", false, fmt.Errorf("invalid environment variable name %q in ${...}", name)
			}
			val, ok := lookup(name)
			switch {
			case hasDef && val == "":
				val = def
			case !ok:
				return "", false, fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(val)
			i += 2 + end
			changed = true
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), changed, nil
}

// validEnvName reports whether name is a POSIX-style variable name.
func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
