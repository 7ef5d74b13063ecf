package sim

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxTokens bounds the token table; expired tokens are pruned beyond it.
const maxTokens = 1024

// handleToken is the OAuth2 client-credentials token endpoint.
func (s *Sim) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
		return
	}
	if !equal(id, s.opts.ClientID) || !equal(secret, s.opts.ClientSecret) {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="bikeep"`)
		}
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	tok := randomHex(24)
	now := s.opts.Now()
	s.mu.Lock()
	if len(s.tokens) >= maxTokens {
		for t, exp := range s.tokens {
			if !now.Before(exp) {
				delete(s.tokens, t)
			}
		}
	}
	s.tokens[tok] = now.Add(s.opts.TokenTTL)
	s.mu.Unlock()
	body, _ := marshal(wireToken{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(s.opts.TokenTTL / time.Second)})
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, body)
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	body, _ := marshal(wireOAuthError{Error: code, ErrorDescription: desc})
	writeJSON(w, status, body)
}

// authorized checks the bearer token and answers 401 if it is missing,
// unknown or expired.
func (s *Sim) authorized(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="bikeep"`)
		writeError(w, http.StatusUnauthorized, "ERRORS.UNAUTHORIZED", "Missing bearer token")
		return false
	}
	s.mu.RLock()
	exp, ok := s.tokens[strings.TrimSpace(tok)]
	s.mu.RUnlock()
	if !ok || !s.opts.Now().Before(exp) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="bikeep", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "ERRORS.UNAUTHORIZED", "Invalid or expired access token")
		return false
	}
	return true
}

// handleLocations serves the location list from its cache.
func (s *Sim) handleLocations(w http.ResponseWriter, r *http.Request) {
	base := s.baseURL(r)
	s.mu.RLock()
	c := s.locList.Load()
	if c == nil || c.base != base {
		c = &cachedBody{base: base, body: s.buildLocations(base)}
		s.locList.Store(c)
	}
	s.mu.RUnlock()
	writeJSON(w, http.StatusOK, c.body)
}

// buildLocations renders the location list. Callers hold mu for reading.
func (s *Sim) buildLocations(base string) []byte {
	out := wireLocationList{Data: make([]wireLocation, 0, len(s.fleet.locations)), URI: base + "/location/v1/locations"}
	for _, l := range s.fleet.locations {
		c := l.counts.Load()
		if c == nil {
			c = &wireDeviceCounts{}
			for _, d := range l.devices {
				d.count(c)
			}
			l.counts.Store(c)
		}
		conn := "online"
		if c.Total > 0 && c.Online == 0 {
			conn = "offline"
		}
		out.Data = append(out.Data, wireLocation{
			ID: l.id, Type: string(l.typ), Name: l.name, Status: "LAUNCHED", Connection: conn,
			Devices: wireDeviceCounts{Total: c.Total, Available: c.Available, Online: c.Online},
		})
	}
	body, _ := marshal(out)
	return body
}

// handleLocationDevices serves a location's devices from its cache.
func (s *Sim) handleLocationDevices(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.RLock()
	l, ok := s.locByID[id]
	s.mu.RUnlock()
	if !ok {
		writeError(w, http.StatusNotFound, "ERRORS.NOT_FOUND", "Location not found")
		return
	}
	if st := int(l.errStatus.Load()); st > 0 {
		writeError(w, st, errorCodeFor(st), "Simulated location error")
		return
	}
	writeJSON(w, http.StatusOK, s.locationBody(l, s.baseURL(r)))
}

// locationBody returns the cached device list of l, building it if a device
// changed since. Building and storing under the read lock is safe: writers
// invalidate under the write lock, so no stale body can be stored after an
// invalidation.
func (s *Sim) locationBody(l *location, base string) []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c := l.cache.Load(); c != nil && c.base == base {
		return c.body
	}
	list := wireDeviceList{Data: make([]json.RawMessage, 0, len(l.devices)), URI: base + "/device/v1/locations/" + l.id + "/devices"}
	var size int
	for _, d := range l.devices {
		b, _ := marshal(d.wire(base))
		size += len(b) + 1
		list.Data = append(list.Data, b)
	}
	// Assemble by hand: re-marshalling RawMessages would re-validate them.
	var buf bytes.Buffer
	buf.Grow(size + len(list.URI) + 32)
	buf.WriteString(`{"data":[`)
	for i, b := range list.Data {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(b)
	}
	buf.WriteString(`],"uri":`)
	u, _ := marshal(list.URI)
	buf.Write(u)
	buf.WriteByte('}')
	body := buf.Bytes()
	l.cache.Store(&cachedBody{base: base, body: body})
	return body
}

// Warm builds the location list and every location's device-list cache for
// baseURL (the base a client will use, e.g. what Start returned), so that a
// benchmark's first walk does not pay for serialization. At about 2 KB per
// device the caches of 100,000 devices hold about 200 MB.
func (s *Sim) Warm(baseURL string) {
	base := strings.TrimRight(baseURL, "/")
	if s.opts.PublicURL != "" {
		base = strings.TrimRight(s.opts.PublicURL, "/")
	}
	s.mu.RLock()
	s.locList.Store(&cachedBody{base: base, body: s.buildLocations(base)})
	locs := s.fleet.locations
	s.mu.RUnlock()
	for _, l := range locs {
		s.locationBody(l, base)
	}
}

func (s *Sim) handleDevice(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	d, ok := s.devByID[r.PathValue("id")]
	var body []byte
	if ok {
		body, _ = marshal(d.wire(s.baseURL(r)))
	}
	s.mu.RUnlock()
	if !ok {
		writeError(w, http.StatusNotFound, "ERRORS.NOT_FOUND", "Parking device not found")
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// maxCommandBody bounds a command request body.
const maxCommandBody = 64 << 10

func (s *Sim) handleSendCommand(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxCommandBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "ERRORS.BAD_REQUEST", "Unreadable request body")
		return
	}
	var req wireCommandRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "ERRORS.BAD_REQUEST", "Request body is not valid JSON")
		return
	}
	now := s.opts.Now()
	base := s.baseURL(r)
	s.mu.Lock()
	d, ok := s.devByID[r.PathValue("id")]
	if !ok {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "ERRORS.NOT_FOUND", "Parking device not found")
		return
	}
	if status, code, msg := validateCommand(d, req, now); status != 0 {
		s.mu.Unlock()
		writeError(w, status, code, msg)
		return
	}
	c := s.newCommand(d, req, base, now)
	body, _ := marshal(c.wire(base))
	s.mu.Unlock()
	s.log.Info("sim: command accepted", "command_id", c.id, "command", c.name, "device_id", d.id,
		"alias", d.alias, "power_cycle", c.powerCycle)
	writeJSON(w, http.StatusOK, body)
}

// validateCommand checks a command against the device; status 0 means valid.
// Callers hold mu.
func validateCommand(d *device, req wireCommandRequest, now time.Time) (int, string, string) {
	if req.Command == "" {
		return http.StatusBadRequest, "ERRORS.VALIDATION_ERROR", "command is required"
	}
	if !d.supports(req.Command) {
		return http.StatusBadRequest, "ERRORS.COMMAND_NOT_SUPPORTED",
			"Command " + req.Command + " is not supported by this device (supported: " + commandsOf(d) + ")"
	}
	switch req.Command {
	case cmdForceUnlock:
		if len(req.Reason) < 5 {
			return http.StatusBadRequest, "ERRORS.VALIDATION_ERROR", "reason is required for force-unlock"
		}
		if (req.Reason == reasonStuckUserOther || req.Reason == reasonOther) && len(req.Comment) < 5 {
			return http.StatusBadRequest, "ERRORS.VALIDATION_ERROR", "comment of at least 5 characters is required for this reason"
		}
	case cmdBook:
		if req.TimeoutAt != nil {
			t, err := time.Parse(time.RFC3339Nano, *req.TimeoutAt)
			if err != nil || !t.After(now) {
				return http.StatusBadRequest, "ERRORS.INVALID_TIMEOUT_AT", "timeout_at must be an RFC 3339 time in the future"
			}
		}
	case cmdLock, cmdUnlock:
		if !d.lastLockCmd.IsZero() && now.Sub(d.lastLockCmd) < throttleWindow(d.power) {
			return http.StatusTooManyRequests, "ERRORS.LOCK_COMMAND_THROTTLED", "Lock commands are throttled for this device, try again later"
		}
	}
	return 0, "", ""
}

func (s *Sim) handleCommand(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	c, ok := s.commands[r.PathValue("id")]
	var body []byte
	if ok {
		body, _ = marshal(c.wire(s.baseURL(r)))
	}
	s.mu.RUnlock()
	if !ok {
		writeError(w, http.StatusNotFound, "ERRORS.NOT_FOUND", "Command not found")
		return
	}
	writeJSON(w, http.StatusOK, body)
}
