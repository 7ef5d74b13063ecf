package copri

import "time"

// BookingState is a rental's / bike's state (open enum).
type BookingState string

// Documented booking and bike states.
const (
	StateOccupied  BookingState = "occupied"
	StateRequested BookingState = "requested"
	StateCanceled  BookingState = "canceled"
	StateAvailable BookingState = "available"
	StateDefect    BookingState = "defect"
)

// Known reports whether s is a documented value.
func (s BookingState) Known() bool {
	switch s {
	case StateOccupied, StateRequested, StateCanceled, StateAvailable, StateDefect:
		return true
	}
	return false
}

// LockState is a smart lock's state (open enum).
type LockState string

// Documented lock states.
const (
	LockLocked    LockState = "locked"
	LockLocking   LockState = "locking"
	LockUnlocked  LockState = "unlocked"
	LockUnlocking LockState = "unlocking"
)

// Known reports whether l is a documented value.
func (l LockState) Known() bool {
	switch l {
	case LockLocked, LockLocking, LockUnlocked, LockUnlocking:
		return true
	}
	return false
}

// ServiceState is bikes_all's service_state: "0" ok, "1" defect, "2" todo, "3" check.
type ServiceState string

// Documented service states.
const (
	ServiceOK     ServiceState = "0"
	ServiceDefect ServiceState = "1"
	ServiceTodo   ServiceState = "2"
	ServiceCheck  ServiceState = "3"
)

// GPS is a parsed position.
type GPS struct {
	Latitude  float64
	Longitude float64
}

// Tariff is a rental's tariff_description (or rental_description).
type Tariff struct {
	Name         string
	Number       string
	EURPerHour   float64
	MaxEURPerDay float64
	FreeHours    float64
}

// Rental is one open rental of user_bikes_occupied, with every scalar parsed.
// The lock key material of the wire format (K_u, K_seed, K_a) is deliberately
// absent: it is dropped while decoding and never held in memory by fleetd.
type Rental struct {
	BookingID     string // the key of bikes_occupied
	Bike          string
	Station       string
	State         BookingState
	LockState     LockState
	StartTime     time.Time // zero when absent or empty
	RequestTime   time.Time
	EndTime       time.Time
	System        string // lock system, e.g. "Ilockit"
	IlockitGUID   string
	IlockitID     string
	URIOperator   string
	GPS           *GPS // nil when absent
	BikeGroup     []string
	Description   string
	UnitPrice     float64
	TotalPrice    float64
	RealHours     float64
	ComputedHours float64
	Tariff        *Tariff // nil when absent
}

// Bike is one bike of bikes_all.
type Bike struct {
	Bike         string
	Station      string
	State        BookingState
	LockState    LockState
	ServiceState ServiceState
	System       string
	GPS          *GPS
	BikeGroup    []string
	URIOperator  string
	Description  string
}
