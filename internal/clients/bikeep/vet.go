package bikeep

import (
	"fmt"

	"github.com/fleetd/fleetd/internal/clients/limits"
)

// A vendor string reaches metric labels, log lines, URLs and the status
// page, so every one is held to a cap here, right after decoding, whichever
// path decoded it. Identifiers are checked and never rewritten: a bad one
// makes its record undecodable (a rewritten id would name another device,
// and only a valid one may go into a URL). Display strings are shortened
// with limits.Marker, and each shortening is reported to note by field name.

// maxTags bounds the tags of one device: each is a display string, and a
// list of thousands would still fill a page.
const maxTags = 64

// maxEvents bounds the event log of one command kept in memory.
const maxEvents = 256

// vetter shortens a record's strings and collects the shortened fields.
type vetter struct {
	note func(field string)
}

func (v vetter) name(field string, s *string) {
	if out, cut := limits.Name(*s); cut {
		*s = out
		v.noted(field)
	}
}

func (v vetter) text(field string, s *string) {
	if out, cut := limits.Text(*s, limits.MaxTextBytes); cut {
		*s = out
		v.noted(field)
	}
}

// enum shortens an open-enum value: unknown values are kept (and exported)
// as they came, so they are display strings too.
func enum[T ~string](v vetter, field string, s *T) {
	str := string(*s)
	v.name(field, &str)
	*s = T(str)
}

func (v vetter) noted(field string) {
	if v.note != nil {
		v.note(field)
	}
}

// checkID applies limits.ID to an identifier named field.
func checkID(field, id string) error {
	if err := limits.ID(id); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

// vetDevice checks a device's ids and shortens its display strings; an
// error means the device is undecodable.
func vetDevice(d *Device, note func(field string)) error {
	if err := checkID("id", d.ID); err != nil {
		return err
	}
	if d.Location != nil && d.Location.ID != "" {
		if err := checkID("location.id", d.Location.ID); err != nil {
			return err
		}
	}
	v := vetter{note: note}
	v.name("alias", &d.Alias)
	v.name("code", &d.Code)
	v.name("nr", &d.Nr)
	v.name("heartbeat", &d.Heartbeat)
	v.name("uri", &d.URI)
	v.name("hardware_id", &d.HardwareID)
	v.text("comment", &d.Comment)
	enum(v, "type", &d.Type)
	enum(v, "sleep_state", &d.SleepState)
	enum(v, "lock_state", &d.LockState)
	enum(v, "hardware_state", &d.HardwareState)
	enum(v, "power_save_strategy", &d.PowerSaveStrategy)
	enum(v, "heartbeat_health", &d.HeartbeatHealth)
	if d.State != nil {
		enum(v, "state.value", &d.State.Value)
	}
	if d.HeartbeatV2 != nil {
		enum(v, "heartbeat_v2.health", &d.HeartbeatV2.Health)
	}
	if d.Location != nil {
		v.name("location.uri", &d.Location.URI)
	}
	if d.PriceList != nil {
		v.name("price_list.id", &d.PriceList.ID)
		v.name("price_list.uri", &d.PriceList.URI)
	}
	if d.Settings != nil {
		v.name("settings.deep_link", &d.Settings.DeepLink)
	}
	if d.User != nil {
		v.name("user.id", &d.User.ID)
	}
	if len(d.Tags) > maxTags {
		d.Tags = d.Tags[:maxTags:maxTags]
		v.noted("tags")
	}
	for i := range d.Tags {
		v.name("tags", &d.Tags[i])
	}
	for name, uri := range d.Commands {
		// A command name over its cap names no command fleetd sends: drop it
		// rather than invent a shortened one.
		if _, cut := limits.Name(name); cut {
			delete(d.Commands, name)
			v.noted("commands")
			continue
		}
		if out, cut := limits.Name(uri); cut {
			d.Commands[name] = out
			v.noted("commands")
		}
	}
	return nil
}

// vetLocation checks a location's id and shortens its display strings.
func vetLocation(l *Location, note func(field string)) error {
	if err := checkID("id", l.ID); err != nil {
		return err
	}
	v := vetter{note: note}
	v.name("location.name", &l.Name)
	enum(v, "location.type", &l.Type)
	v.name("location.status", &l.Status)
	v.name("location.connection", &l.Connection)
	return nil
}

// vetCommand checks a command's id (it goes into the polling URL) and
// shortens its strings.
func vetCommand(c *Command, note func(field string)) error {
	if c.ID != "" {
		if err := checkID("id", c.ID); err != nil {
			return err
		}
	}
	if c.Device.ID != "" {
		if err := checkID("device.id", c.Device.ID); err != nil {
			return err
		}
	}
	v := vetter{note: note}
	v.name("command.name", &c.Name)
	v.name("command.uri", &c.URI)
	v.text("command.state.reason", &c.State.Reason)
	enum(v, "command.state.value", &c.State.Value)
	v.name("command.device.uri", &c.Device.URI)
	if len(c.Events) > maxEvents {
		c.Events = c.Events[len(c.Events)-maxEvents:]
		v.noted("command.events")
	}
	for i := range c.Events {
		v.name("command.events.name", &c.Events[i].Name)
		v.name("command.events.value", &c.Events[i].Value)
	}
	return nil
}
