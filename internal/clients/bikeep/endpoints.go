package bikeep

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/fleetd/fleetd/internal/clients/httpx"
	"github.com/fleetd/fleetd/internal/clients/limits"
)

// ListLocations returns the locations visible to the operator
// (GET /location/v1/locations). A "data" that is null or missing is a
// *DecodeError, not an empty result: discovery would otherwise forget every
// location on one glitching answer.
func (c *Client) ListLocations(ctx context.Context) ([]Location, error) {
	var env struct {
		Data *[]Location `json:"data"`
		URI  string      `json:"uri"`
	}
	cl := call{method: http.MethodGet, route: RouteLocations, path: "/location/v1/locations"}
	if err := c.do(ctx, cl, &env); err != nil {
		return nil, err
	}
	if env.Data == nil {
		return nil, &DecodeError{Route: RouteLocations, Err: errors.New(`"data" is null or missing`)}
	}
	data := *env.Data
	locs := make([]Location, 0, len(data))
	for i := range data {
		// A location whose id cannot go into a URL cannot be walked: it is
		// left out and said so, once per discovery.
		if err := vetLocation(&data[i], c.inst.ObserveTruncated); err != nil {
			c.log.WarnContext(ctx, "bikeep: location left out: unusable id", "index", i, "err", err)
			continue
		}
		locs = append(locs, data[i])
	}
	return locs, nil
}

// ListLocationDevices returns the devices of a location
// (GET /device/v1/locations/{id}/devices).
//
// Devices are decoded one by one so that a single malformed entry does not
// hide the others: then the good devices are returned together with a
// *PartialDecodeError naming the bad entries (a body that breaks off inside
// the list counts the entry where it breaks as bad). A body that is not the
// list envelope is a *DecodeError with no devices; so is an envelope whose
// "data" is null, missing or not an array, which says nothing about the
// location's devices (an empty location answers "data":[]).
func (c *Client) ListLocationDevices(ctx context.Context, locationID string) ([]Device, error) {
	id, err := escapeID("location", locationID)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	cl := call{method: http.MethodGet, route: RouteLocationDevices, path: "/device/v1/locations/" + id + "/devices"}
	if err := c.do(ctx, cl, &raw); err != nil {
		return nil, err
	}
	return decodeDeviceList(RouteLocationDevices, raw, c.inst.ObserveTruncated)
}

// GetDevice returns one device (GET /device/v1/devices/{id}).
func (c *Client) GetDevice(ctx context.Context, deviceID string) (*Device, error) {
	id, err := escapeID("device", deviceID)
	if err != nil {
		return nil, err
	}
	var d Device
	cl := call{method: http.MethodGet, route: RouteDevice, path: "/device/v1/devices/" + id}
	if err := c.do(ctx, cl, &d); err != nil {
		return nil, err
	}
	if err := vetDevice(&d, c.inst.ObserveTruncated); err != nil {
		return nil, &DecodeError{Route: RouteDevice, Err: err}
	}
	return &d, nil
}

// SendCommand sends a command to a device
// (POST /device/v1/devices/{id}/commands) and returns the created command,
// to be polled with GetCommand.
//
// The POST is never retried once it may have reached the server. Errors:
//   - *AmbiguousSendError: the request may have been executed (timeout or
//     dropped connection after sending, 5xx, unreadable 2xx body); do not
//     re-send blindly.
//   - *APIError / *RateLimitError (4xx): a definite refusal; nothing happened.
//   - anything else (invalid request, token failure, connection refused):
//     the request never left.
func (c *Client) SendCommand(ctx context.Context, deviceID string, req CommandRequest) (*Command, error) {
	id, err := escapeID("device", deviceID)
	if err != nil {
		return nil, err
	}
	if req.Command == "" {
		return nil, errors.New("bikeep: send command: empty command name")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("bikeep: send command: encode request: %w", err)
	}
	var cmd Command
	cl := call{
		method:   http.MethodPost,
		route:    RouteDeviceCommands,
		path:     "/device/v1/devices/" + id + "/commands",
		body:     body,
		cmd:      &req,
		deviceID: deviceID,
	}
	if err := c.do(ctx, cl, &cmd); err != nil {
		return nil, err
	}
	if err := vetCommand(&cmd, c.inst.ObserveTruncated); err != nil {
		// The POST was answered 2xx, so the command may exist: ambiguous.
		return nil, c.ambiguousIf(cl, true, &DecodeError{Route: RouteDeviceCommands, Err: err})
	}
	return &cmd, nil
}

// GetCommand returns a command's current state (GET /device/v1/commands/{id}).
func (c *Client) GetCommand(ctx context.Context, commandID string) (*Command, error) {
	id, err := escapeID("command", commandID)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	cl := call{method: http.MethodGet, route: RouteCommand, path: "/device/v1/commands/" + id}
	if err := c.do(ctx, cl, &raw); err != nil {
		return nil, err
	}
	return decodeCommand(RouteCommand, raw, c.inst.ObserveTruncated)
}

// decodeDeviceList decodes the {"data":[...],"uri":...} envelope, each
// device on its own. A device whose id fails limits.ID is undecodable;
// display strings are shortened, each reported to note (which may be nil).
// The result is exactly one of: the complete list and a nil error; the
// devices that decoded and a *PartialDecodeError; nil and a *DecodeError.
func decodeDeviceList(route string, b []byte, note func(field string)) ([]Device, error) {
	if err := requireObject(b); err != nil {
		return nil, &DecodeError{Route: route, Err: err}
	}
	// Fast path: one decode of the whole list, which is what a healthy API
	// sends. Only when it fails is the list split into items, so that one bad
	// device costs its own entry and not the location's other devices.
	var fast struct {
		Data []*Device `json:"data"`
	}
	if json.Unmarshal(b, &fast) == nil && fast.Data != nil && !slices.Contains(fast.Data, nil) && !slices.ContainsFunc(fast.Data, badIDs) {
		devs := make([]Device, len(fast.Data))
		for i, d := range fast.Data {
			_ = vetDevice(d, note) // ids checked above: only shortens
			devs[i] = *d
		}
		return devs, nil
	}
	env, cut, err := splitList(b)
	if err != nil {
		return nil, &DecodeError{Route: route, Err: err}
	}
	devs := make([]Device, 0, len(env.Data))
	var bad []ItemError
	for i, item := range env.Data {
		if bytes.Equal(item, []byte("null")) {
			bad = append(bad, ItemError{Index: i, Err: errors.New("null device")})
			continue
		}
		var d Device
		if err := json.Unmarshal(item, &d); err != nil {
			bad = append(bad, ItemError{Index: i, ID: itemID(item), Err: err})
			continue
		}
		if err := vetDevice(&d, note); err != nil {
			bad = append(bad, ItemError{Index: i, ID: itemID(item), Err: err})
			continue
		}
		devs = append(devs, d)
	}
	total := len(env.Data)
	if cut != nil {
		bad = append(bad, *cut)
		total++
	}
	if len(bad) > 0 {
		return devs, &PartialDecodeError{Route: route, Total: total, Bad: bad}
	}
	return devs, nil
}

// badIDs reports whether a decoded device's ids fail limits.ID.
func badIDs(d *Device) bool {
	if limits.ID(d.ID) != nil {
		return true
	}
	return d.Location != nil && d.Location.ID != "" && limits.ID(d.Location.ID) != nil
}

// itemID extracts a string "id" from a list entry that failed to decode,
// sanitized because it ends up in an error string. An id that fails
// limits.ID is not shown at all: the error says what is wrong with it.
func itemID(item []byte) string {
	var v struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(item, &v) != nil {
		return ""
	}
	var id string
	if json.Unmarshal(v.ID, &id) != nil || limits.ID(id) != nil {
		return ""
	}
	return httpx.Sanitize(id, 64)
}

// decodeCommand decodes a command object, checks its ids and shortens its
// strings (each reported to note, which may be nil).
func decodeCommand(route string, b []byte, note func(field string)) (*Command, error) {
	var cmd Command
	if err := decodeInto(route, b, &cmd); err != nil {
		return nil, err
	}
	if err := vetCommand(&cmd, note); err != nil {
		return nil, &DecodeError{Route: route, Err: err}
	}
	return &cmd, nil
}
