package bikeep

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/fleetd/fleetd/internal/record"
)

// bodyDecoder is a do target that reads the 2xx body itself instead of
// having it read whole first. wrap prefixes transport errors with the
// request's method and route.
type bodyDecoder interface {
	decodeBody(body io.Reader, wrap func(error) error) error
}

// listTarget decodes a device list with the client's ListDecoder.
type listTarget struct {
	ld   *ListDecoder
	prev []record.Device
	devs []record.Device
}

func (l *listTarget) decodeBody(body io.Reader, wrap func(error) error) error {
	devs, err := l.ld.Decode(body, l.prev)
	l.devs = devs
	var de *DecodeError
	var pe *PartialDecodeError
	var tl *BodyTooLargeError
	if err == nil || errors.As(err, &de) || errors.As(err, &pe) || errors.As(err, &tl) {
		return err
	}
	return wrap(err)
}

// WalkLocationDevices is ListLocationDevices for the device walk: the body
// is decoded as it arrives, straight into compact records (ListDecoder),
// sharing unchanged strings and locations with prev, the location's records
// from the previous walk. Errors are those of ListLocationDevices: a
// *PartialDecodeError comes with the devices that did decode.
func (c *Client) WalkLocationDevices(ctx context.Context, locationID string, prev []record.Device) ([]record.Device, error) {
	id, err := escapeID("location", locationID)
	if err != nil {
		return nil, err
	}
	t := listTarget{ld: c.lists, prev: prev}
	cl := call{method: http.MethodGet, route: RouteLocationDevices, path: "/device/v1/locations/" + id + "/devices"}
	err = c.do(ctx, cl, &t)
	var pe *PartialDecodeError
	if err != nil && !errors.As(err, &pe) {
		return nil, err
	}
	return t.devs, err
}
