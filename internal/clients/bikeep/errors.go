package bikeep

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// APIError is a non-2xx answer of the API. When the body is the documented
// error envelope its fields are filled in; otherwise (an HTML page from a
// proxy, say) Body holds a short sanitized snippet of it.
type APIError struct {
	StatusCode int
	// ErrorCode is the machine-readable code, e.g. ERRORS.NOT_FOUND: branch on
	// this, never on Message.
	ErrorCode string
	Message   string
	// CorrelationID is what vendor support asks for; keep it in logs.
	CorrelationID string
	// Method and Route (the path template, never the raw URL) name the request.
	Method string
	Route  string
	// Body is the first 256 bytes of a non-JSON error body, sanitized. It is
	// not part of Error() so that a proxy page never floods a log line.
	Body string
}

// Error names method, route template, status, error code and correlation id.
// The vendor message is left out on purpose: it is free text the client
// cannot vouch for.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bikeep: %s %s: HTTP %d", e.Method, e.Route, e.StatusCode)
	if e.ErrorCode != "" {
		b.WriteString(" " + e.ErrorCode)
	}
	if e.CorrelationID != "" {
		b.WriteString(" (correlation_id " + e.CorrelationID + ")")
	}
	return b.String()
}

// RateLimitError is a 429 answer. For lock/unlock it usually carries
// ERRORS.LOCK_COMMAND_THROTTLED and no Retry-After header.
type RateLimitError struct {
	APIError
	// RetryAfter is the parsed Retry-After header (seconds or HTTP date), 0
	// when the header is absent, unparsable or in the past.
	RetryAfter time.Duration
}

// Error adds the Retry-After hint to the APIError text.
func (e *RateLimitError) Error() string {
	s := e.APIError.Error()
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(", retry after %s", e.RetryAfter)
	}
	return s
}

// Unwrap lets errors.As find the embedded *APIError.
func (e *RateLimitError) Unwrap() error { return &e.APIError }

// BodyTooLargeError reports a response body over the configured limit. The
// body is not read beyond Limit+1 bytes.
type BodyTooLargeError struct {
	Limit int64
	Route string
}

func (e *BodyTooLargeError) Error() string {
	return fmt.Sprintf("bikeep: %s: response body exceeds %d bytes", e.Route, e.Limit)
}

// DecodeError is a 2xx response whose body is not the documented JSON:
// malformed or truncated, or with values of the wrong type.
type DecodeError struct {
	Route string
	Err   error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("bikeep: decode response of %s: %v", e.Route, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// AmbiguousSendError means a command POST left the client but its outcome is
// unknown: a timeout or a dropped connection after the request was written, a
// 5xx answer, or a 2xx answer that could not be read. The command may or may
// not have been executed, so it must not be re-sent blindly.
type AmbiguousSendError struct {
	DeviceID string
	Command  string
	Err      error
}

func (e *AmbiguousSendError) Error() string {
	return fmt.Sprintf("bikeep: command %q to device %s may or may not have been sent: %v",
		e.Command, e.DeviceID, e.Err)
}

func (e *AmbiguousSendError) Unwrap() error { return e.Err }

// ItemError is one entry of a list that failed to decode.
type ItemError struct {
	// Index is the position in data[].
	Index int
	// ID is the item's id when it could still be extracted, else "".
	ID  string
	Err error
}

func (e ItemError) Error() string {
	if e.ID != "" {
		return fmt.Sprintf("item %d (id %s): %v", e.Index, e.ID, e.Err)
	}
	return fmt.Sprintf("item %d: %v", e.Index, e.Err)
}

// PartialDecodeError is returned together with the items that did decode
// when some entries of a list did not.
type PartialDecodeError struct {
	Route string
	// Total is the number of entries in data[].
	Total int
	Bad   []ItemError
}

func (e *PartialDecodeError) Error() string {
	const show = 3
	parts := make([]string, 0, show)
	for i, it := range e.Bad {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(e.Bad)-show))
			break
		}
		parts = append(parts, it.Error())
	}
	return fmt.Sprintf("bikeep: %s: %d of %d items failed to decode: %s",
		e.Route, len(e.Bad), e.Total, strings.Join(parts, "; "))
}

// Unwrap exposes the per-item causes to errors.Is/As.
func (e *PartialDecodeError) Unwrap() []error {
	errs := make([]error, len(e.Bad))
	for i, it := range e.Bad {
		errs[i] = it.Err
	}
	return errs
}

// IsNotFound reports whether err is an API answer meaning the resource does
// not exist (HTTP 404 or ERRORS.NOT_FOUND).
func IsNotFound(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) {
		return false
	}
	return ae.StatusCode == 404 || ae.ErrorCode == "ERRORS.NOT_FOUND"
}
