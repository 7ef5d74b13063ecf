package simcheck

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
	"github.com/fleetd/fleetd/internal/secret"
	"github.com/fleetd/fleetd/internal/sim"
)

// TestClientsDecodeEverythingTheSimulatorServes runs the real clients over
// every route of a simulated fleet with every fault kind injected: no decode
// error, no partially decoded list, and the fields fleetd relies on filled.
func TestClientsDecodeEverythingTheSimulatorServes(t *testing.T) {
	opts := sim.DefaultOptions()
	opts.Seed, opts.Locations, opts.DevicesPerLocation, opts.Latency = 7, 8, 12, 0
	opts.FaultRate, opts.ErrorRate = 0, 0
	opts.CommandStepDelay = time.Millisecond
	opts.Logger = slog.New(slog.DiscardHandler)
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, kind := range sim.FaultKinds() {
		if kind == sim.FaultNone {
			continue
		}
	next:
		for _, l := range s.Locations() {
			for _, d := range s.Devices(l.ID) {
				if !used[d.ID] && s.SetFault(d.ID, kind) == nil {
					used[d.ID] = true
					break next
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, err := s.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	bk, err := bikeep.NewClient(url, bikeep.WithClientCredentials(url+"/oauth2/token", sim.DefaultClientID, secret.String(sim.DefaultClientSecret)))
	if err != nil {
		t.Fatal(err)
	}
	locs, err := bk.ListLocations(ctx)
	if err != nil || len(locs) != 8 {
		t.Fatalf("ListLocations: %d, %v", len(locs), err)
	}
	var syncable *bikeep.Device
	unknown := 0
	for _, l := range locs {
		if l.ID == "" || l.Name == "" || !l.Type.Known() || l.Devices.Total != 12 {
			t.Errorf("location %+v", l)
		}
		devs, err := bk.ListLocationDevices(ctx, l.ID)
		if err != nil || len(devs) != 12 {
			t.Fatalf("ListLocationDevices(%s): %d, %v", l.ID, len(devs), err)
		}
		for i := range devs {
			d := &devs[i]
			if d.ID == "" || d.Alias == "" || d.LocationID() != l.ID || len(d.Commands) == 0 || d.Type == "" {
				t.Errorf("device missing essentials: %+v", d)
			}
			if !d.Health().Known() || !d.HardwareState.Known() {
				unknown++
			}
			if syncable == nil && d.Supports(bikeep.CmdSyncDevice) && d.Health() == bikeep.HealthHealthy && d.SleepState == bikeep.SleepAwake {
				syncable = d
			}
			one, err := bk.GetDevice(ctx, d.ID)
			if err != nil || one.ID != d.ID || one.Alias != d.Alias {
				t.Fatalf("GetDevice(%s): %v", d.ID, err)
			}
		}
	}
	if unknown == 0 {
		t.Error("the unknown_state fault should have produced an undocumented value that still decodes")
	}
	if syncable == nil {
		t.Fatal("no syncable device")
	}
	cmd, err := bk.SendCommand(ctx, syncable.ID, bikeep.CommandRequest{Command: bikeep.CmdSyncDevice, PowerCycle: true})
	if err != nil || cmd.ID == "" || cmd.Name != bikeep.CmdSyncDevice || cmd.Device.ID != syncable.ID || cmd.State.TimeoutAt.IsZero() {
		t.Fatalf("SendCommand: %+v, %v", cmd, err)
	}
	for !cmd.State.Value.Terminal() {
		time.Sleep(5 * time.Millisecond)
		if cmd, err = bk.GetCommand(ctx, cmd.ID); err != nil {
			t.Fatal(err)
		}
	}
	if cmd.State.Value != bikeep.CommandSuccess || len(cmd.Events) == 0 {
		t.Fatalf("command ended %+v", cmd)
	}
	if _, err := bk.GetCommand(ctx, "00000000-0000-0000-0000-000000000000"); !bikeep.IsNotFound(err) {
		t.Fatalf("unknown command: %v", err)
	}
	var apiErr *bikeep.APIError
	if _, err := bk.GetDevice(ctx, "nope"); !errors.As(err, &apiErr) || apiErr.CorrelationID == "" {
		t.Fatalf("error envelope: %v", err)
	}

	cp, err := copri.NewClient(url, url, copri.Credentials{MerchantID: sim.DefaultCopriMerchant, UserID: sim.DefaultCopriUser,
		Password: secret.String(sim.DefaultCopriPassword), HWID: "fleetd-conformance-0001"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Login(ctx); err != nil {
		t.Fatal(err)
	}
	rentals, err := cp.UserBikesOccupied(ctx)
	if err != nil || len(rentals) == 0 {
		t.Fatalf("UserBikesOccupied: %d, %v", len(rentals), err)
	}
	for _, r := range rentals {
		if r.BookingID == "" || r.Bike == "" || r.StartTime.IsZero() || r.LockState == "" || r.GPS == nil {
			t.Errorf("rental missing essentials: %+v", r)
		}
	}
	bikes, err := cp.BikesAll(ctx)
	if err != nil || len(bikes) == 0 {
		t.Fatalf("BikesAll: %d, %v", len(bikes), err)
	}
	if err := cp.Logout(ctx); err != nil {
		t.Fatal(err)
	}
}
