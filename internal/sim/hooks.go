package sim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// The /sim/v1/ hooks let out-of-process tests (and the demo) drive the
// simulator. They need no token and get no latency or injected faults.

func (s *Sim) handleStats(w http.ResponseWriter, _ *http.Request) {
	body, err := marshal(s.Stats())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "ERRORS.INTERNAL_SERVER_ERROR", "cannot encode stats")
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// handleSetFault is POST /sim/v1/devices/{id}/faults {"fault":"dead"}.
func (s *Sim) handleSetFault(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Fault FaultKind `json:"fault"`
	}
	if err := decodeHook(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "ERRORS.BAD_REQUEST", err.Error())
		return
	}
	id := r.PathValue("id")
	if _, ok := s.Device(id); !ok {
		writeError(w, http.StatusNotFound, "ERRORS.NOT_FOUND", "Parking device not found")
		return
	}
	if err := s.SetFault(id, req.Fault); err != nil {
		writeError(w, http.StatusBadRequest, "ERRORS.BAD_REQUEST", err.Error())
		return
	}
	d, _ := s.Device(id)
	body, _ := marshal(map[string]any{"device_id": id, "faults": d.Faults})
	writeJSON(w, http.StatusOK, body)
}

// handleSetStubborn is POST /sim/v1/devices/{id}/stubborn {"stubborn":true}.
func (s *Sim) handleSetStubborn(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Stubborn bool `json:"stubborn"`
	}
	if err := decodeHook(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "ERRORS.BAD_REQUEST", err.Error())
		return
	}
	id := r.PathValue("id")
	if err := s.SetStubborn(id, req.Stubborn); err != nil {
		writeError(w, http.StatusNotFound, "ERRORS.NOT_FOUND", "Parking device not found")
		return
	}
	body, _ := marshal(map[string]any{"device_id": id, "stubborn": req.Stubborn})
	writeJSON(w, http.StatusOK, body)
}

// handleSetLocationError is POST /sim/v1/locations/{id}/error {"status":500}.
func (s *Sim) handleSetLocationError(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Status int `json:"status"`
	}
	if err := decodeHook(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "ERRORS.BAD_REQUEST", err.Error())
		return
	}
	if req.Status != 0 && (req.Status < 400 || req.Status > 599) {
		writeError(w, http.StatusBadRequest, "ERRORS.BAD_REQUEST", "status must be 0 or an HTTP error status")
		return
	}
	id := r.PathValue("id")
	s.mu.RLock()
	_, ok := s.locByID[id]
	s.mu.RUnlock()
	if !ok {
		writeError(w, http.StatusNotFound, "ERRORS.NOT_FOUND", "Location not found")
		return
	}
	s.SetLocationError(id, req.Status)
	body, _ := marshal(map[string]any{"location_id": id, "status": req.Status})
	writeJSON(w, http.StatusOK, body)
}

func decodeHook(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("body must be a JSON object like {\"fault\":\"dead\"} or {\"status\":500}")
	}
	return nil
}
