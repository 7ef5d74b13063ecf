package remediate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/fleetd/fleetd/internal/health"
)

// schemaVersion is the ledger layout this version reads and writes. A ledger
// written by a newer fleetd is refused rather than misread.
const schemaVersion = 1

// lockTimeout bounds the wait for the file lock: a second fleetd on the same
// ledger must fail fast with a clear error instead of hanging.
const lockTimeout = time.Second

var (
	bucketMeta     = []byte("meta")
	bucketEpisodes = []byte("episodes")
	bucketDevices  = []byte("devices")
	bucketCommands = []byte("commands")
	bucketStorms   = []byte("storms")

	keySchema = []byte("schema")
	keyPause  = []byte("pause")
)

func allBuckets() [][]byte {
	return [][]byte{bucketMeta, bucketEpisodes, bucketDevices, bucketCommands, bucketStorms}
}

// Command phases as stored in the ledger.
const (
	// phaseSending: written ahead of the POST; the outcome is not known yet.
	// Found at start-up it means fleetd died mid-POST: treated as unknown.
	phaseSending = "sending"
	// phasePolling: the vendor created the command; it is being polled.
	phasePolling = "polling"
	// phaseUnknown: the POST failed ambiguously; the command may exist. It
	// blocks the device until the cooldown after its send has passed.
	phaseUnknown = "unknown"
	// phaseDone: the command ended (success, error, timeout) and awaits
	// verification on a later walk.
	phaseDone = "done"
)

// pauseRecord is the persisted pause state (meta/pause).
type pauseRecord struct {
	Paused bool      `json:"paused"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
}

// episodeRecord is one fault episode that has used at least one attempt.
type episodeRecord struct {
	DeviceID    string           `json:"device_id"`
	Alias       string           `json:"alias,omitempty"`
	LocationID  string           `json:"location_id"`
	Fault       health.FaultKind `json:"fault"`
	FirstSeen   time.Time        `json:"first_seen"`
	Attempts    int              `json:"attempts"`
	LastAttempt time.Time        `json:"last_attempt"`
	// AbsentSince is when the device was first missing from a complete list
	// of its location since it was last seen with the fault; zero while seen.
	AbsentSince time.Time `json:"absent_since,omitzero"`
}

func (r *episodeRecord) key() string {
	return episodeKey{r.DeviceID, r.Fault, r.FirstSeen.UnixNano()}.String()
}

// deviceRecord remembers a device's last send, for the per-device cooldown.
type deviceRecord struct {
	DeviceID string    `json:"device_id"`
	LastSend time.Time `json:"last_send"`
}

// commandRecord is one sync-device attempt, from the write-ahead record to
// its verification.
type commandRecord struct {
	DeviceID      string           `json:"device_id"`
	Alias         string           `json:"alias,omitempty"`
	LocationID    string           `json:"location_id"`
	Fault         health.FaultKind `json:"fault"`
	FirstSeen     time.Time        `json:"first_seen"`
	Attempt       int              `json:"attempt"`
	PowerCycle    bool             `json:"power_cycle,omitempty"`
	SentAt        time.Time        `json:"sent_at"`
	Phase         string           `json:"phase"`
	CommandID     string           `json:"command_id,omitempty"`
	TimeoutAt     time.Time        `json:"timeout_at,omitzero"`
	Result        string           `json:"result,omitempty"`
	EndedAt       time.Time        `json:"ended_at,omitzero"`
	CorrelationID string           `json:"correlation_id,omitempty"`
	Source        string           `json:"source,omitempty"`
}

func (r *commandRecord) key() string {
	return episodeKey{r.DeviceID, r.Fault, r.FirstSeen.UnixNano()}.String() + "\x00" + strconv.Itoa(r.Attempt)
}

func (r *commandRecord) inFlight() bool { return r.Phase != phaseDone }

// stormRecord is an active storm. The hold-below timer is deliberately not
// persisted: time fleetd was down was not measured, so after a restart the
// ratio must hold below the limit for a whole cooldown again.
type stormRecord struct {
	Scope string    `json:"scope"`
	Since time.Time `json:"since"`
}

// episodeKey identifies a fault episode.
type episodeKey struct {
	DeviceID  string
	Fault     health.FaultKind
	FirstSeen int64 // UnixNano; comparable and cheap
}

func (k episodeKey) String() string {
	return k.DeviceID + "\x00" + string(k.Fault) + "\x00" + strconv.FormatInt(k.FirstSeen, 10)
}

// ledgerState is everything the ledger holds, validated.
type ledgerState struct {
	pause    pauseRecord
	episodes []episodeRecord
	devices  []deviceRecord
	commands []commandRecord
	storms   []stormRecord
}

// Ledger is the durable memory of the remediation engine: pause state,
// storms, fault episodes and their attempts, per-device last sends and every
// command from its write-ahead record to its verification. It is a bbolt file
// with JSON values; every write is one fsynced transaction.
type Ledger struct {
	db   *bolt.DB
	path string
}

// OpenLedger opens (or creates) the ledger at path. The parent directory
// must exist. Every record is read and validated before the ledger is
// handed out; a corrupt, unreadable, locked or newer-schema file is an
// error naming path, and the file is left as it was — the ledger is never
// silently reset, because forgetting attempts and cooldowns could send
// commands a healthy ledger would refuse.
func OpenLedger(path string) (*Ledger, error) {
	if path == "" {
		return nil, errors.New("ledger: no path configured")
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("ledger %s: directory %s: %w", path, dir, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("ledger %s: %s is not a directory", path, dir)
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// Created below.
	case err != nil:
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	case st.IsDir():
		return nil, fmt.Errorf("ledger %s is a directory", path)
	case st.Size() > 0:
		// Validate read-only first: a read-only open never writes, so a
		// corrupt file stays exactly as it was for a human to inspect.
		if err := validateFile(path); err != nil {
			return nil, err
		}
	}
	db, err := openBolt(path, false)
	if err != nil {
		return nil, err
	}
	l := &Ledger{db: db, path: path}
	if err := l.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if _, err := l.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return l, nil
}

// Path returns the file the ledger lives in.
func (l *Ledger) Path() string { return l.path }

// Close closes the ledger file and releases its lock.
func (l *Ledger) Close() error {
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("close ledger %s: %w", l.path, err)
	}
	return nil
}

func openBolt(path string, readOnly bool) (db *bolt.DB, err error) {
	defer recoverCorrupt(path, &err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: readOnly})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("ledger %s is locked by another process (is another fleetd running?): %w", path, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("ledger %s is corrupt or not a fleetd ledger (left untouched; move it aside to start afresh): %w", path, err)
	default:
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
}

// recoverCorrupt turns a bbolt panic (or a memory fault on a truncated,
// memory-mapped file, with SetPanicOnFault) into an error naming the file.
func recoverCorrupt(path string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("ledger %s is corrupt (left untouched; move it aside to start afresh): %v", path, r)
	}
}

// validateFile opens an existing file read-only and reads every record.
func validateFile(path string) error {
	db, err := openBolt(path, true)
	if err != nil {
		return err
	}
	defer db.Close()
	l := &Ledger{db: db, path: path}
	if err := l.checkSize(); err != nil {
		return err
	}
	_, err = l.load()
	return err
}

// checkSize refuses a file shorter than the database it claims to hold
// (a truncated copy): reading its missing pages would fault.
func (l *Ledger) checkSize() error {
	st, err := os.Stat(l.path)
	if err != nil {
		return fmt.Errorf("ledger %s: %w", l.path, err)
	}
	return l.db.View(func(tx *bolt.Tx) error {
		if want := tx.Size(); st.Size() < want {
			return fmt.Errorf("ledger %s is corrupt: file has %d bytes, database claims %d (truncated?)", l.path, st.Size(), want)
		}
		return nil
	})
}

// init creates the buckets and the schema key in a new file, and checks the
// schema of an existing one.
func (l *Ledger) init() (err error) {
	defer recoverCorrupt(l.path, &err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	empty := true
	if err := l.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
	}); err != nil {
		return fmt.Errorf("ledger %s: %w", l.path, err)
	}
	if !empty {
		return nil // load checks the schema and every record
	}
	err = l.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets() {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, []byte(strconv.Itoa(schemaVersion)))
	})
	if err != nil {
		return fmt.Errorf("initialise ledger %s: %w", l.path, err)
	}
	return nil
}

// load reads and validates every record.
func (l *Ledger) load() (st ledgerState, err error) {
	defer recoverCorrupt(l.path, &err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	err = l.db.View(func(tx *bolt.Tx) error {
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			for _, b := range allBuckets() {
				if string(b) == string(name) {
					return nil
				}
			}
			return fmt.Errorf("unexpected bucket %q", name)
		}); err != nil {
			return err
		}
		for _, b := range allBuckets() {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("bucket %q is missing", b)
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(keySchema)
		if v == nil {
			return errors.New("no schema version")
		}
		n, err := strconv.Atoi(string(v))
		switch {
		case err != nil || n < 1:
			return fmt.Errorf("invalid schema version %q", v)
		case n > schemaVersion:
			return &newerSchemaError{n}
		}
		if err := meta.ForEach(func(k, v []byte) error {
			switch string(k) {
			case string(keySchema):
			case string(keyPause):
				if err := strictJSON(v, &st.pause); err != nil {
					return fmt.Errorf("meta/pause: %w", err)
				}
			default:
				return fmt.Errorf("meta: unexpected key %q", k)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketEpisodes).ForEach(func(k, v []byte) error {
			var r episodeRecord
			if err := strictJSON(v, &r); err != nil {
				return fmt.Errorf("episodes/%q: %w", k, err)
			}
			if r.DeviceID == "" || r.Fault == "" || r.FirstSeen.IsZero() || r.Attempts < 1 || r.key() != string(k) {
				return fmt.Errorf("episodes/%q: invalid record", k)
			}
			st.episodes = append(st.episodes, r)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			var r deviceRecord
			if err := strictJSON(v, &r); err != nil {
				return fmt.Errorf("devices/%q: %w", k, err)
			}
			if r.DeviceID != string(k) || r.LastSend.IsZero() {
				return fmt.Errorf("devices/%q: invalid record", k)
			}
			st.devices = append(st.devices, r)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketCommands).ForEach(func(k, v []byte) error {
			var r commandRecord
			if err := strictJSON(v, &r); err != nil {
				return fmt.Errorf("commands/%q: %w", k, err)
			}
			valid := r.DeviceID != "" && r.Fault != "" && r.Attempt >= 1 && !r.SentAt.IsZero() && r.key() == string(k)
			switch r.Phase {
			case phaseSending, phaseUnknown:
			case phasePolling:
				valid = valid && r.CommandID != ""
			case phaseDone:
				valid = valid && r.CommandID != "" && r.Result != "" && !r.EndedAt.IsZero()
			default:
				valid = false
			}
			if !valid {
				return fmt.Errorf("commands/%q: invalid record", k)
			}
			st.commands = append(st.commands, r)
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketStorms).ForEach(func(k, v []byte) error {
			var r stormRecord
			if err := strictJSON(v, &r); err != nil {
				return fmt.Errorf("storms/%q: %w", k, err)
			}
			if r.Scope != string(k) || r.Scope == "" || r.Since.IsZero() {
				return fmt.Errorf("storms/%q: invalid record", k)
			}
			st.storms = append(st.storms, r)
			return nil
		})
	})
	var newer *newerSchemaError
	switch {
	case errors.As(err, &newer):
		return ledgerState{}, fmt.Errorf("ledger %s: %w", l.path, err)
	case err != nil:
		return ledgerState{}, fmt.Errorf("ledger %s is corrupt or unreadable (left untouched; move it aside to start afresh): %w", l.path, err)
	}
	return st, nil
}

// newerSchemaError: the ledger was written by a newer fleetd.
type newerSchemaError struct{ version int }

func (e *newerSchemaError) Error() string {
	return fmt.Sprintf("schema version %d is newer than this fleetd understands (%d); upgrade fleetd", e.version, schemaVersion)
}

func strictJSON(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// ledgerOp is one put (value non-nil) or delete (value nil) in a bucket.
type ledgerOp struct {
	bucket []byte
	key    string
	value  any
}

func putOp(bucket []byte, key string, v any) ledgerOp { return ledgerOp{bucket, key, v} }
func delOp(bucket []byte, key string) ledgerOp        { return ledgerOp{bucket, key, nil} }

// apply writes ops in one transaction; bbolt fsyncs on commit, so when apply
// returns nil the change survives a crash.
func (l *Ledger) apply(ops ...ledgerOp) error {
	if len(ops) == 0 {
		return nil
	}
	err := l.db.Update(func(tx *bolt.Tx) error {
		for _, op := range ops {
			b := tx.Bucket(op.bucket)
			if op.value == nil {
				if err := b.Delete([]byte(op.key)); err != nil {
					return err
				}
				continue
			}
			v, err := json.Marshal(op.value)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(op.key), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write ledger %s: %w", l.path, err)
	}
	return nil
}
