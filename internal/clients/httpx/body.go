package httpx

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/fleetd/fleetd/internal/clients/limits"
	"github.com/fleetd/fleetd/internal/secret"
)

// ErrBodyTooLarge is returned by ReadCapped for a body over its limit.
var ErrBodyTooLarge = errors.New("response body too large")

// ErrorBodyLimit bounds what is read of an error body: an error envelope is
// small and a proxy's HTML page is only sampled.
const ErrorBodyLimit = 64 << 10

// ReadCapped reads a response body of at most limit bytes; a longer one
// (by Content-Length or by what arrives) is ErrBodyTooLarge and is never
// read whole.
func ReadCapped(resp *http.Response, limit int64) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, ErrBodyTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		clear(b)
		return nil, err
	}
	if int64(len(b)) > limit {
		clear(b)
		return nil, ErrBodyTooLarge
	}
	return b, nil
}

// ReadErrorBody samples an error body, at most min(ErrorBodyLimit, limit).
func ReadErrorBody(resp *http.Response, limit int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, min(ErrorBodyLimit, limit)))
	return b
}

// Sanitize makes server-supplied text safe for an error string or a log
// line: the given secrets masked, invalid UTF-8 and control characters
// dropped, whitespace runs collapsed, and at most max bytes (shortened with
// limits.Marker).
func Sanitize(s string, max int, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, secret.Masked)
		}
	}
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
		if b.Len() > max {
			break // enough to know it gets shortened
		}
	}
	out, _ := limits.Text(b.String(), max)
	return out
}

// StripTags drops what lies between < and > (an HTML error page reduced to
// its text), leaving a space where a tag was.
func StripTags(s string) string {
	var b strings.Builder
	inTag := false
	for _, r := range s {
		switch {
		case r == '<':
			inTag = true
		case r == '>' && inTag:
			inTag = false
			b.WriteByte(' ')
		case !inTag:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// StripURL removes *url.Error layers: their text carries the full request
// URL, and errors name the route template instead.
func StripURL(err error) error {
	for {
		ue, ok := err.(*url.Error)
		if !ok || ue.Err == nil {
			return err
		}
		err = ue.Err
	}
}

// IsDialError reports whether err happened while establishing the
// connection (DNS lookup, TCP connect), i.e. before any request byte was
// written.
func IsDialError(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
