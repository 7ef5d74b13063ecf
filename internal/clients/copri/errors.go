package copri

import (
	"fmt"
	"strconv"
	"strings"
)

// FailureError is a response whose shareejson.response_state does not start
// with "OK" (COPRI reports errors as "Failure NNNN: text" in a normal HTTP
// response). ResponseState and ResponseText are server text, scrubbed of the
// password and authcookie.
type FailureError struct {
	Request       string // request name, e.g. "user_bikes_occupied"
	ResponseState string
	ResponseText  string
}

func (e *FailureError) Error() string {
	msg := fmt.Sprintf("copri request=%s: %s", e.Request, orEmpty(e.ResponseState))
	if e.ResponseText != "" {
		msg += " (" + e.ResponseText + ")"
	}
	return msg
}

// Code returns the NNNN of "Failure NNNN: ...", or 0 when the state carries
// no number.
func (e *FailureError) Code() int {
	s := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(e.ResponseState), "Failure"))
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(s[:end])
	if err != nil {
		return 0
	}
	return n
}

// AuthError means COPRI did not grant (or no longer honours) a session: the
// login was refused, or a response came back without an authcookie.
type AuthError struct {
	Request       string // "authorization", or the data request whose session was dropped
	Reason        string // fleetd's description, e.g. "login refused"
	ResponseState string // server text, scrubbed of secrets
	ResponseText  string
}

func (e *AuthError) Error() string {
	msg := fmt.Sprintf("copri request=%s: %s", e.Request, e.Reason)
	if e.ResponseState != "" {
		msg += ": " + e.ResponseState
	}
	if e.ResponseText != "" {
		msg += " (" + e.ResponseText + ")"
	}
	return msg
}

// APIError is a response that is not a COPRI JSON document: a non-2xx HTTP
// status, or an HTML page (as proxies and web servers send when the backend is
// down). Body is a short, sanitized snippet: tags stripped, secrets scrubbed,
// and never the raw body of a JSON document (which may carry key material).
type APIError struct {
	Request    string
	StatusCode int
	Body       string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("copri request=%s: HTTP %d", e.Request, e.StatusCode)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// DecodeError is a response that could not be decoded. Field is the path of
// the offending value, e.g. "bikes_occupied[155896].unit_price"; it is empty
// when the document as a whole is malformed.
type DecodeError struct {
	Request string
	Field   string
	Err     error
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("copri request=%s: decoding response: %v", e.Request, e.Err)
	}
	return fmt.Sprintf("copri request=%s: %s: %v", e.Request, e.Field, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// BodyTooLargeError is a response body longer than the configured limit.
type BodyTooLargeError struct {
	Request string
	Limit   int64
}

func (e *BodyTooLargeError) Error() string {
	return fmt.Sprintf("copri request=%s: response body exceeds %d bytes", e.Request, e.Limit)
}

func orEmpty(s string) string {
	if s == "" {
		return `empty response_state`
	}
	return s
}
