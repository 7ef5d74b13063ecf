package bikeep

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/fleetd/fleetd/internal/clients/httpx"
)

// Errors of a list envelope that carries no list. A 200 answer without its
// list is no evidence that the location is empty: taking it for an empty list
// would make every device vanish and end its fault episodes, so these are
// *DecodeErrors and the location counts as failed.
var (
	errDataMissing  = errors.New(`no "data" key`)
	errDataNull     = errors.New(`"data" is null`)
	errDataNotArray = errors.New(`"data" is not an array`)
)

// listEnvelope is a {"data":[...],"uri":...} body split into its entries.
type listEnvelope struct {
	// Data is non-nil once the envelope has been accepted.
	Data []json.RawMessage
}

// splitList splits a list envelope into its raw entries.
//
// The envelope itself must be well-formed: a body that is not an object, a
// "data" key that is missing, null or not an array, or a body that
// is malformed outside the array is an error (the whole answer is unusable).
// A body that breaks off or turns malformed inside the array keeps the
// entries before the break and reports the break as cut, the index of the
// first entry that could not be read: the caller then has a partial list,
// whose missing devices are unknown rather than gone.
func splitList(b []byte) (env listEnvelope, cut *ItemError, err error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil {
		return env, nil, err
	} else if tok != json.Delim('{') {
		return env, nil, fmt.Errorf("want a JSON object, got %v", tok)
	}
	// dataErr is what is wrong with the last "data" value; a repeated
	// "data" replaces the earlier one, as in the fast path (encoding/json
	// keeps the last value of a key).
	dataErr := errDataMissing
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return listEnvelope{}, nil, err
		}
		key, _ := tok.(string)
		// Keys match as encoding/json matches them, case-insensitively, so
		// both decode paths see the same "data".
		if !strings.EqualFold(key, "data") {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return listEnvelope{}, nil, fmt.Errorf("value of %q: %w", httpx.Sanitize(key, 32), err)
			}
			continue
		}
		tok, err = dec.Token()
		if err != nil {
			return listEnvelope{}, nil, err
		}
		if tok != json.Delim('[') {
			env.Data, dataErr = nil, errDataNotArray
			if tok == nil {
				dataErr = errDataNull
			}
			if err := skipValue(dec, tok); err != nil {
				return listEnvelope{}, nil, err
			}
			continue
		}
		env.Data, dataErr = []json.RawMessage{}, nil
		for dec.More() {
			var item json.RawMessage
			if err := dec.Decode(&item); err != nil {
				return env, cutAt(len(env.Data), err), nil
			}
			env.Data = append(env.Data, item)
		}
		if _, err := dec.Token(); err != nil { // the closing ']'
			return env, cutAt(len(env.Data), err), nil
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return listEnvelope{}, nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return listEnvelope{}, nil, errors.New("data after the top-level object")
	}
	if dataErr != nil {
		return listEnvelope{}, nil, dataErr
	}
	return env, nil, nil
}

// skipValue consumes the rest of a value whose first token was tok.
func skipValue(dec *json.Decoder, tok json.Token) error {
	depth := 0
	for {
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
		var err error
		if tok, err = dec.Token(); err != nil {
			return err
		}
	}
}

func cutAt(index int, err error) *ItemError {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &ItemError{Index: index, Err: fmt.Errorf("list breaks off here: %w", err)}
}
