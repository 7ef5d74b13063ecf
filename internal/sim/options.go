package sim

import (
	"log/slog"
	"time"
)

// Options configures a Sim. The zero value of a field means its default; see
// DefaultOptions.
type Options struct {
	// Seed makes the fleet, fault evolution and sync-device cures
	// reproducible: the same seed gives the same fleet.
	Seed int64
	// Locations and DevicesPerLocation size the fleet.
	Locations, DevicesPerLocation int
	// Latency is added to every vendor API request (not to /sim/ hooks).
	Latency time.Duration

	// ClientID and ClientSecret are the accepted OAuth2 client credentials.
	ClientID, ClientSecret string
	// TokenTTL is the lifetime of an access token (expires_in).
	TokenTTL time.Duration

	// CopriMerchant, CopriUser and CopriPassword are the accepted COPRI login.
	CopriMerchant, CopriUser, CopriPassword string

	// Rentals is the number of open rentals at start. Negative means none;
	// zero means the default: about 2 % of BIKE_RENT devices, at least 3
	// when any exist.
	Rentals int

	// FaultRate is the per device per minute probability that a new fault
	// starts (0 = none).
	FaultRate float64
	// CureRate is the per faulty device per minute probability that its
	// faults clear by themselves.
	CureRate float64
	// SyncCureProbability is the chance that a sync-device cures a
	// recoverable fault. Zero means the default 0.9; use a negative value for
	// "never".
	SyncCureProbability float64

	// ErrorRate is the fraction of vendor API requests answered with a
	// transport fault: 500, 502 (HTML), 503, 429, malformed JSON or a hang,
	// spread evenly over those kinds.
	ErrorRate float64
	// HangDuration is how long a hanging response hangs before it answers
	// 504 (or until the request's context ends). Default 60s.
	HangDuration time.Duration
	// CommandStepDelay is the delay between NOT_SENT→SENT→RECEIVED→final.
	// Default 500ms.
	CommandStepDelay time.Duration
	// CommandTimeout bounds a command (its state.timeout_at). Default 60s.
	CommandTimeout time.Duration

	// PublicURL, when set, is the base of every URI in responses; otherwise
	// the base is derived from each request's Host.
	PublicURL string

	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives one line per command and per fault change; default
	// discards.
	Logger *slog.Logger
}

// Defaults, exported so that help texts and demos can show them.
const (
	DefaultClientID      = "fleetd-demo"
	DefaultClientSecret  = "fleetd-demo-secret"
	DefaultCopriMerchant = "12345678"
	DefaultCopriUser     = "demo@example.org"
	DefaultCopriPassword = "demo-password"
)

// DefaultOptions returns the options `fleetd sim` starts with.
func DefaultOptions() Options {
	return Options{
		Seed:                1,
		Locations:           20,
		DevicesPerLocation:  12,
		Latency:             20 * time.Millisecond,
		ClientID:            DefaultClientID,
		ClientSecret:        DefaultClientSecret,
		TokenTTL:            time.Hour,
		CopriMerchant:       DefaultCopriMerchant,
		CopriUser:           DefaultCopriUser,
		CopriPassword:       DefaultCopriPassword,
		SyncCureProbability: 0.9,
		HangDuration:        60 * time.Second,
		CommandStepDelay:    500 * time.Millisecond,
		CommandTimeout:      60 * time.Second,
		Now:                 time.Now,
	}
}

// withDefaults fills zero fields from DefaultOptions. Fleet size and latency
// are taken as given (zero latency is useful in tests) except that an empty
// fleet gets the default size.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Locations <= 0 {
		o.Locations = d.Locations
	}
	if o.DevicesPerLocation <= 0 {
		o.DevicesPerLocation = d.DevicesPerLocation
	}
	if o.ClientID == "" {
		o.ClientID = d.ClientID
	}
	if o.ClientSecret == "" {
		o.ClientSecret = d.ClientSecret
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = d.TokenTTL
	}
	if o.CopriMerchant == "" {
		o.CopriMerchant = d.CopriMerchant
	}
	if o.CopriUser == "" {
		o.CopriUser = d.CopriUser
	}
	if o.CopriPassword == "" {
		o.CopriPassword = d.CopriPassword
	}
	switch {
	case o.SyncCureProbability == 0:
		o.SyncCureProbability = d.SyncCureProbability
	case o.SyncCureProbability < 0:
		o.SyncCureProbability = 0
	case o.SyncCureProbability > 1:
		o.SyncCureProbability = 1
	}
	if o.HangDuration <= 0 {
		o.HangDuration = d.HangDuration
	}
	if o.CommandStepDelay <= 0 {
		o.CommandStepDelay = d.CommandStepDelay
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = d.CommandTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// FaultKind is a fault the simulator can inject into a device.
type FaultKind string

// Fault kinds. Their names match the fault names of fleetd's health
// classification where one exists.
const (
	// FaultNone clears every fault of a device (SetFault only).
	FaultNone FaultKind = "none"
	// FaultUnhealthy: heartbeat_v2.health UNHEALTHY.
	FaultUnhealthy FaultKind = "unhealthy"
	// FaultDead: health DEAD, dead_since = when the fault started.
	FaultDead FaultKind = "dead"
	// FaultLongDead: health LONG_DEAD, dead_since days ago.
	FaultLongDead FaultKind = "long_dead"
	// FaultHardwareError: hardware_state ERROR.
	FaultHardwareError FaultKind = "hardware_error"
	// FaultNotResponding: hardware_state NOT_RESPONDING.
	FaultNotResponding FaultKind = "not_responding"
	// FaultStuckTransition: state.value LOCKING since 10 min, timeout_at in
	// the past.
	FaultStuckTransition FaultKind = "stuck_transition"
	// FaultLockMismatch: lock_state disagrees with state.value, the same
	// way for every type with a lock: an idle BIKE_HOUSE_DOOR (LOCKED/LOCKED)
	// reads UNLOCKED. Refused for a GUARD, which has no lock.
	FaultLockMismatch FaultKind = "lock_mismatch"
	// FaultRentalLockMismatch: a BIKE_RENT device's lock disagrees with its
	// open rental's lock_state (a rental is opened if there is none).
	FaultRentalLockMismatch FaultKind = "rental_lock_mismatch"
	// FaultOverdueRental: the BIKE_RENT device's bike has a rental that
	// started 30 h ago (opened if there is none).
	FaultOverdueRental FaultKind = "overdue_rental"
	// FaultUnknownState: hardware_state "QUANTUM_FLUX" (devices with an even
	// index in their location) or health "ZOMBIE" (odd index).
	FaultUnknownState FaultKind = "unknown_state"
	// FaultDisabled: hardware_state DISABLED — operator intent, not a fault
	// to fleetd.
	FaultDisabled FaultKind = "disabled"
)

// allFaultKinds lists every injectable kind (without FaultNone), in the
// order their effects are applied to a device. A function returning an array
// value keeps it immutable.
func allFaultKinds() [11]FaultKind {
	return [...]FaultKind{
		FaultUnhealthy, FaultDead, FaultLongDead, FaultHardwareError, FaultNotResponding,
		FaultStuckTransition, FaultLockMismatch, FaultRentalLockMismatch, FaultOverdueRental,
		FaultUnknownState, FaultDisabled,
	}
}

// FaultKinds returns every injectable fault kind (without FaultNone).
func FaultKinds() []FaultKind {
	all := allFaultKinds()
	return all[:]
}

// Recoverable reports whether a sync-device can cure the fault.
func (k FaultKind) Recoverable() bool {
	switch k {
	case FaultUnhealthy, FaultHardwareError, FaultNotResponding, FaultStuckTransition,
		FaultLockMismatch, FaultRentalLockMismatch:
		return true
	}
	return false
}

// valid reports whether k is FaultNone or an injectable kind.
func (k FaultKind) valid() bool { return k == FaultNone || k.bit() != 0 }

// bit is k's bit in a device's fault set; 0 for FaultNone and unknown kinds.
func (k FaultKind) bit() faultSet {
	for i, f := range allFaultKinds() {
		if f == k {
			return 1 << i
		}
	}
	return 0
}

// faultSet is a set of FaultKinds as a bit mask in faultKinds order.
type faultSet uint16

func (s faultSet) has(k FaultKind) bool { return s&k.bit() != 0 }

// kinds lists the set's kinds in application order.
func (s faultSet) kinds() []FaultKind {
	var out []FaultKind
	for i, f := range allFaultKinds() {
		if s&(1<<i) != 0 {
			out = append(out, f)
		}
	}
	return out
}

// recoverable is the subset of s that a sync-device can cure.
func (s faultSet) recoverable() faultSet {
	var r faultSet
	for _, k := range s.kinds() {
		if k.Recoverable() {
			r |= k.bit()
		}
	}
	return r
}
