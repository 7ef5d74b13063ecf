package bikeep

import (
	"context"
	"net/http"
	"reflect"
	"testing"
)

func TestInstrumenterSeesRouteTemplatesAndRetries(t *testing.T) {
	tests := []struct {
		name        string
		handler     http.HandlerFunc
		op          func(context.Context, *Client) error
		wantReqs    []observation
		wantRetries []observation
	}{
		{
			name:    "GET retried after 500",
			handler: failThenOK(1, 500, `{}`, `{"id":"dev/1"}`),
			op: func(ctx context.Context, c *Client) error {
				_, err := c.GetDevice(ctx, "dev/1?x=secret")
				return err
			},
			wantReqs: []observation{
				{RouteDevice, "GET", 500},
				{RouteDevice, "GET", 200},
			},
			wantRetries: []observation{{Route: RouteDevice, Method: "GET"}},
		},
		{
			name:    "list devices, 503 twice",
			handler: failThenOK(2, 503, `{}`, `{"data":[]}`),
			op: func(ctx context.Context, c *Client) error {
				_, err := c.ListLocationDevices(ctx, "loc-1")
				return err
			},
			wantReqs: []observation{
				{RouteLocationDevices, "GET", 503},
				{RouteLocationDevices, "GET", 503},
				{RouteLocationDevices, "GET", 200},
			},
			wantRetries: []observation{
				{Route: RouteLocationDevices, Method: "GET"},
				{Route: RouteLocationDevices, Method: "GET"},
			},
		},
		{
			name:    "POST 500 not retried",
			handler: respond(500, `{}`),
			op: func(ctx context.Context, c *Client) error {
				_, err := c.SendCommand(ctx, "d", CommandRequest{Command: CmdSyncDevice})
				return err
			},
			wantReqs: []observation{{RouteDeviceCommands, "POST", 500}},
		},
		{
			name:    "command poll and locations",
			handler: respond(200, `{"id":"c","data":[]}`),
			op: func(ctx context.Context, c *Client) error {
				if _, err := c.GetCommand(ctx, "c"); err != nil {
					return err
				}
				_, err := c.ListLocations(ctx)
				return err
			},
			wantReqs: []observation{{RouteCommand, "GET", 200}, {RouteLocations, "GET", 200}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			c, _, _ := newTestClient(t, tc.handler, WithInstrumenter(rec))
			_ = tc.op(context.Background(), c)
			reqs, retries := rec.snapshot()
			if !reflect.DeepEqual(reqs, tc.wantReqs) {
				t.Errorf("requests %+v\nwant %+v", reqs, tc.wantReqs)
			}
			if !reflect.DeepEqual(retries, tc.wantRetries) {
				t.Errorf("retries %+v\nwant %+v", retries, tc.wantRetries)
			}
		})
	}
}
