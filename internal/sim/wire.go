package sim

import (
	"bytes"
	"encoding/json"
	"time"
)

// The simulator's own wire structs. Field order follows the reference
// payloads so that a diff against them reads naturally; they deliberately do
// not reuse the client's types.

type wireRef struct {
	ID  string `json:"id"`
	URI string `json:"uri"`
}

type wireDeviceState struct {
	ChangedAt *string `json:"changed_at"`
	Value     string  `json:"value"`
	TimeoutAt *string `json:"timeout_at"`
}

type wireHeartbeatV2 struct {
	SentAt        *string `json:"sent_at"`
	LatencyMillis int     `json:"latency_millis"`
	Health        string  `json:"health"`
	DeadSince     *string `json:"dead_since"`
}

type wireSettings struct {
	UpdatedAt *string `json:"updated_at"`
	CreatedAt *string `json:"created_at"`
	DeepLink  string  `json:"deep_link"`
}

type wireUser struct {
	AccessKey string `json:"access_key"`
	ID        string `json:"id"`
}

type wireDevice struct {
	WifiRSSI         *float64          `json:"wifi_rssi"`
	Code             string            `json:"code"`
	Nr               string            `json:"nr"`
	Heartbeat        string            `json:"heartbeat"`
	SleepState       string            `json:"sleep_state"`
	Type             string            `json:"type"`
	HasOTPSupport    bool              `json:"has_otp_support"`
	PriceList        *wireRef          `json:"price_list"`
	HeartbeatLatency *float64          `json:"heartbeat_latency"`
	Alias            string            `json:"alias"`
	ID               string            `json:"id"`
	State            *wireDeviceState  `json:"state"`
	HeartbeatV2      *wireHeartbeatV2  `json:"heartbeat_v2"`
	Commands         map[string]string `json:"commands"`
	HasAccessLists   bool              `json:"has_access_lists"`
	HasSubscription  bool              `json:"has_subscription"`
	Settings         *wireSettings     `json:"settings"`
	LockState        *string           `json:"lock_state"`
	HeartbeatHealth  *string           `json:"heartbeat_health"`
	URI              string            `json:"uri"`
	PowerSave        string            `json:"power_save_strategy"`
	Tags             []string          `json:"tags"`
	Comment          string            `json:"comment"`
	Location         *wireRef          `json:"location"`
	User             *wireUser         `json:"user"`
	HasAllowlist     bool              `json:"has_allowlist"`
	HardwareID       string            `json:"hardware_id"`
	HardwareState    string            `json:"hardware_state"`
	HasCamera        bool              `json:"has_camera"`
}

type wireDeviceList struct {
	Data []json.RawMessage `json:"data"`
	URI  string            `json:"uri"`
}

type wireDeviceCounts struct {
	Total     int `json:"total"`
	Available int `json:"available"`
	Online    int `json:"online"`
}

type wireLocation struct {
	ID         string           `json:"id"`
	Type       string           `json:"type"`
	Name       string           `json:"name"`
	Status     string           `json:"status"`
	Connection string           `json:"connection"`
	Devices    wireDeviceCounts `json:"devices"`
}

type wireLocationList struct {
	Data []wireLocation `json:"data"`
	URI  string         `json:"uri"`
}

type wireCommandState struct {
	Reason    string  `json:"reason"`
	Value     string  `json:"value"`
	TimeoutAt *string `json:"timeout_at"`
}

type wireEvent struct {
	Name      string  `json:"name"`
	Value     string  `json:"value"`
	Timestamp *string `json:"timestamp"`
}

type wireCommand struct {
	Name   string           `json:"name"`
	ID     string           `json:"id"`
	State  wireCommandState `json:"state"`
	URI    string           `json:"uri"`
	Device wireRef          `json:"device"`
	Events []wireEvent      `json:"events"`
}

type wireError struct {
	ErrorMessage  string `json:"error_message"`
	StatusCode    int    `json:"status_code"`
	CorrelationID string `json:"correlation_id"`
	ErrorCode     string `json:"error_code"`
}

type wireToken struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

type wireOAuthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// wireCommandRequest is the body of POST .../commands.
type wireCommandRequest struct {
	Command    string  `json:"command"`
	Reason     string  `json:"reason"`
	UserID     string  `json:"user_id"`
	PowerCycle bool    `json:"power_cycle"`
	Comment    string  `json:"comment"`
	TimeoutAt  *string `json:"timeout_at"`
}

// COPRI. Every scalar is a string, as on the real server.

type wireShareeEnvelope struct {
	Response      string   `json:"response"`
	ResponseState string   `json:"response_state"`
	ResponseText  string   `json:"response_text"`
	Authcookie    string   `json:"authcookie"`
	UserID        string   `json:"user_id"`
	UserGroup     []string `json:"user_group"`
	CopriVersion  string   `json:"copri_version"`
	URIPrimary    string   `json:"uri_primary"`
	ClearingCache string   `json:"clearing_cache"`
	Debuglevel    string   `json:"debuglevel"`
	Lang          string   `json:"lang"`
}

type wireGPS struct {
	Longitude string `json:"longitude"`
	Latitude  string `json:"latitude"`
}

type wireTariff struct {
	MaxEURPerDay string `json:"max_eur_per_day"`
	EURPerHour   string `json:"eur_per_hour"`
	Name         string `json:"name"`
	Number       string `json:"number,omitempty"`
	ID           string `json:"id,omitempty"` // rental_description names the number "id"
	FreeHours    string `json:"free_hours"`
}

type wireRental struct {
	StartTime         string      `json:"start_time"`
	UnitPrice         string      `json:"unit_price"`
	Description       string      `json:"description"`
	LockState         string      `json:"lock_state"`
	RequestTime       string      `json:"request_time"`
	KU                string      `json:"K_u"`
	KSeed             string      `json:"K_seed"`
	KA                string      `json:"K_a,omitempty"`
	BikeGroup         []string    `json:"bike_group"`
	URIOperator       string      `json:"uri_operator"`
	RealHours         string      `json:"real_hours"`
	System            string      `json:"system"`
	ComputedHours     string      `json:"computed_hours"`
	GPS               wireGPS     `json:"gps"`
	TariffDescription *wireTariff `json:"tariff_description,omitempty"`
	RentalDescription *wireTariff `json:"rental_description,omitempty"`
	State             string      `json:"state"`
	Bike              string      `json:"bike"`
	TotalPrice        string      `json:"total_price"`
	Station           string      `json:"station"`
	IlockitGUID       string      `json:"Ilockit_GUID"`
	IlockitID         string      `json:"Ilockit_ID"`
	EndTime           string      `json:"end_time"`
}

type wireBike struct {
	Bike         string   `json:"bike"`
	Station      string   `json:"station"`
	State        string   `json:"state"`
	LockState    string   `json:"lock_state"`
	ServiceState string   `json:"service_state"`
	System       string   `json:"system"`
	GPS          wireGPS  `json:"gps"`
	BikeGroup    []string `json:"bike_group"`
	URIOperator  string   `json:"uri_operator"`
	Description  string   `json:"description"`
}

type wireCopriAuth struct {
	Shareejson wireShareeEnvelope `json:"shareejson"`
}

// The reference text puts the data beside shareejson, not inside it.
type wireCopriOccupied struct {
	Shareejson    wireShareeEnvelope    `json:"shareejson"`
	BikesOccupied map[string]wireRental `json:"bikes_occupied"`
}

type wireCopriBikes struct {
	Shareejson wireShareeEnvelope  `json:"shareejson"`
	Bikes      map[string]wireBike `json:"bikes"`
}

// ts formats a Bikeep timestamp: RFC 3339 in UTC with at most millisecond
// precision (so both "…:00Z" and "…:00.123Z" occur), null for the zero time.
func ts(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)
	return &s
}

// marshal encodes v without HTML escaping and without the trailing newline
// of json.Encoder.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// view is the device as the API shows it right now: the base state with the
// device's faults rendered over it.
type view struct {
	state     stateValue
	changedAt time.Time
	timeoutAt time.Time
	lock      lockState
	health    health // "" with noHB
	noHB      bool   // heartbeat_v2 null
	deadSince time.Time
	hardware  hardwareState
}

// longDeadAge is how long before the fault started a LONG_DEAD device died.
func (d *device) longDeadAge() time.Duration { return time.Duration(3+d.idx%5) * 24 * time.Hour }

func (d *device) view() view {
	v := view{
		state:     d.state,
		changedAt: d.stateChangedAt,
		timeoutAt: d.stateTimeoutAt,
		lock:      d.lock,
		health:    healthHealthy,
		noHB:      d.noHealthData,
		hardware:  hwNormal,
	}
	if v.noHB {
		v.health = ""
	}
	if d.faults == 0 {
		return v
	}
	for _, k := range d.faults.kinds() {
		since := d.faultSince[k]
		switch k {
		case FaultUnhealthy:
			v.health, v.noHB = healthUnhealthy, false
		case FaultDead:
			v.health, v.noHB, v.deadSince = healthDead, false, since
		case FaultLongDead:
			v.health, v.noHB, v.deadSince = healthLongDead, false, since.Add(-d.longDeadAge())
		case FaultHardwareError:
			v.hardware = hwError
		case FaultNotResponding:
			v.hardware = hwNotResponding
		case FaultStuckTransition:
			// A door rests LOCKED, so it gets stuck opening; the others
			// get stuck locking.
			v.state = stateLocking
			if d.isDoor() {
				v.state = stateUnlocking
			}
			v.changedAt = since.Add(-10 * time.Minute)
			v.timeoutAt = since.Add(-9 * time.Minute)
		case FaultLockMismatch:
			if d.hasLock() {
				v.lock = mismatchedLock(v.state)
			}
		case FaultRentalLockMismatch:
			if d.bike != nil && d.bike.rental != nil {
				// Lock and state agree with each other but not with the
				// rental, so only the rental comparison shows the fault.
				if rentalLocked(d.bike.rental) {
					v.state, v.lock = stateUnlocked, lockUnlocked
				} else {
					v.state, v.lock = stateLocked, lockLocked
				}
			}
		case FaultUnknownState:
			if d.locIdx%2 == 0 {
				v.hardware = unknownHardwareState
			} else {
				v.health, v.noHB = unknownHealth, false
			}
		case FaultDisabled:
			v.hardware = hwDisabled
		}
	}
	return v
}

// mismatchedLock is a lock_state that disagrees with state, for every type
// with a lock alike: UNLOCKED under a LOCKED (or LOCKING) state, LOCKED
// otherwise.
func mismatchedLock(state stateValue) lockState {
	if state == stateLocked || state == stateLocking {
		return lockUnlocked
	}
	return lockLocked
}

// deprecatedHealth is heartbeat_health: it folds LONG_DEAD into DEAD.
func deprecatedHealth(h health) string {
	if h == healthDead || h == healthLongDead {
		return deprecatedHealthDead
	}
	return string(h)
}

// wire renders d for base (the URL prefix of every URI).
func (d *device) wire(base string) wireDevice {
	v := d.view()
	uri := base + "/device/v1/devices/" + d.id
	cmdURI := uri + "/commands"
	cmds := make(map[string]string, len(d.commands))
	for _, c := range d.commands {
		cmds[c] = cmdURI
	}
	w := wireDevice{
		Code:          d.code,
		Nr:            d.alias,
		Heartbeat:     *ts(d.heartbeatAt),
		SleepState:    string(d.sleep),
		Type:          string(d.typ),
		HasOTPSupport: d.hasOTP,
		Alias:         d.alias,
		ID:            d.id,
		State: &wireDeviceState{
			ChangedAt: ts(v.changedAt),
			Value:     string(v.state),
			TimeoutAt: ts(v.timeoutAt),
		},
		Commands:        cmds,
		HasAccessLists:  d.hasAccessLists,
		HasSubscription: d.hasSub,
		Settings: &wireSettings{
			UpdatedAt: ts(d.settingsUpdated),
			CreatedAt: ts(d.settingsCreated),
			DeepLink:  "https://app.bikeep.com/d/" + d.code,
		},
		URI:           uri,
		PowerSave:     string(d.power),
		Tags:          nonNil(d.tags),
		Comment:       d.comment,
		Location:      &wireRef{ID: d.loc.id, URI: base + "/location/v1/locations/" + d.loc.id},
		HasAllowlist:  d.hasAllowlist,
		HardwareID:    d.hardwareID,
		HardwareState: string(v.hardware),
		HasCamera:     d.hasCamera,
	}
	w.PriceList = &wireRef{ID: d.priceListID, URI: base + "/pricing/v1/price-lists/" + d.priceListID}
	if v.lock != "" {
		ls := string(v.lock)
		w.LockState = &ls
	}
	if !v.noHB {
		w.HeartbeatV2 = &wireHeartbeatV2{
			SentAt:    ts(d.heartbeatAt),
			Health:    string(v.health),
			DeadSince: ts(v.deadSince),
		}
		hh := deprecatedHealth(v.health)
		w.HeartbeatHealth = &hh
	}
	if d.userID != "" && v.state == stateLocked {
		w.User = &wireUser{AccessKey: d.userKey, ID: d.userID}
	}
	return w
}

// counts adds d to c the way the location list summarises devices.
func (d *device) count(c *wireDeviceCounts) {
	v := d.view()
	c.Total++
	online := v.health != healthDead && v.health != healthLongDead &&
		v.hardware != hwNotResponding
	if online {
		c.Online++
	}
	var available bool
	switch {
	case d.typ == typeGuard:
		available = true
	case d.isDoor():
		available = v.state == stateLocked && v.lock == lockLocked
	default:
		available = v.state == stateUnlocked && v.lock == lockUnlocked
	}
	if available && online && v.hardware == hwNormal {
		c.Available++
	}
}

// nonNil turns a nil slice into an empty one, which encodes as [] not null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
