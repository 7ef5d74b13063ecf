package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/fleetd/fleetd/internal/remediate/policy"
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

func (k opKind) bucket() []byte {
	return [...][]byte{opPause: bucketMeta, opEpisode: bucketEpisodes, opDevice: bucketDevices,
		opCommand: bucketCommands, opStorm: bucketStorms}[k]
}

// Bolt is the ledger in a bbolt file with JSON values: the embedded Store
// for one replica. Every write is one fsynced transaction.
type Bolt struct {
	db   *bolt.DB
	path string
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens the ledger at path, creating it only if no file is there.
// The parent directory must exist. An existing file is checked before
// bbolt may touch it and every record is read and validated before the
// ledger is handed out: an empty, short, corrupt, truncated, locked or
// newer-schema file, or a bbolt file that is not a fleetd ledger, is an
// error naming path, and the file is left byte for byte as it was. The
// ledger is never silently reset, because forgetting attempts and cooldowns
// could send commands a healthy ledger would refuse.
func OpenBolt(path string) (*Bolt, error) {
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
	if errors.Is(err, os.ErrNotExist) {
		err = create(path)
		if errors.Is(err, os.ErrExist) {
			st, err = os.Stat(path) // created by someone else meanwhile: check it like any other
		}
	}
	switch {
	case err != nil:
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	case st == nil:
		// Created above: a complete, valid ledger.
	case st.IsDir():
		return nil, fmt.Errorf("ledger %s is a directory", path)
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("ledger %s is not a regular file", path)
	default:
		if err := validateFile(path, st.Size()); err != nil {
			return nil, err
		}
	}
	db, err := openBolt(path, false)
	if err != nil {
		return nil, err
	}
	b := &Bolt{db: db, path: path}
	if _, err := b.Load(context.Background()); err != nil {
		_ = db.Close()
		return nil, err
	}
	return b, nil
}

// String returns the file the ledger lives in.
func (b *Bolt) String() string { return b.path }

// Close closes the ledger file and releases its lock.
func (b *Bolt) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close ledger %s: %w", b.path, err)
	}
	return nil
}

// CopyTo writes a consistent copy of the ledger to path while it is in
// use: a backup an operator can restore.
func (b *Bolt) CopyTo(path string) error {
	if err := b.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(path, 0o600) }); err != nil {
		return fmt.Errorf("copy ledger %s to %s: %w", b.path, path, err)
	}
	return nil
}

// create makes a new ledger at path without ever exposing a half-made
// one: it is initialised under a temporary name and hard-linked into
// place, which fails with os.ErrExist if a file appeared there meanwhile.
// A crash leaves at most a stray temporary file, never a file at path that
// the next start would have to refuse.
func create(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_ = tmp.Close()
	defer os.Remove(name)
	db, err := bolt.Open(name, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("initialise: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets() {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, []byte(strconv.Itoa(schemaVersion)))
	})
	if err = errors.Join(err, db.Close()); err != nil {
		return fmt.Errorf("initialise: %w", err)
	}
	if err := os.Link(name, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
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
		return nil, &UnusableError{Path: path, Problem: "is corrupt or not a fleetd ledger", Err: err}
	default:
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
}

// recoverCorrupt turns a bbolt panic (or a memory fault on a truncated,
// memory-mapped file, with SetPanicOnFault) into an error naming the file.
func recoverCorrupt(path string, err *error) {
	if r := recover(); r != nil {
		*err = &UnusableError{Path: path, Problem: fmt.Sprintf("is corrupt (%v)", r)}
	}
}

// validateFile checks an existing file before a read-write open could
// change it: first its size and header by hand (bbolt initialises an empty
// file it opens for writing), then every record through a read-only open,
// which never writes.
func validateFile(path string, size int64) error {
	if err := checkHeader(path, size); err != nil {
		return err
	}
	db, err := openBolt(path, true)
	if err != nil {
		return err
	}
	defer db.Close()
	b := &Bolt{db: db, path: path}
	if err := b.checkSize(size); err != nil {
		return err
	}
	_, err = b.Load(context.Background())
	return err
}

// checkSize refuses a file shorter than the database it claims to hold
// (a truncated copy): reading its missing pages would fault.
func (b *Bolt) checkSize(size int64) error {
	return b.db.View(func(tx *bolt.Tx) error {
		if want := tx.Size(); size < want {
			return &UnusableError{Path: b.path, Problem: fmt.Sprintf("is corrupt: the file has %d bytes, the database it holds claims %d (truncated?)", size, want)}
		}
		return nil
	})
}

// Load reads and validates every record.
func (b *Bolt) Load(ctx context.Context) (st State, err error) {
	if err := ctx.Err(); err != nil {
		return State{}, err
	}
	defer recoverCorrupt(b.path, &err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	err = b.db.View(func(tx *bolt.Tx) error {
		if err := checkLayout(tx); err != nil {
			return err
		}
		var err error
		if st.Pause, err = loadMeta(tx); err != nil {
			return err
		}
		if st.Episodes, err = loadBucket[Episode](tx, bucketEpisodes); err != nil {
			return err
		}
		if st.Devices, err = loadBucket[Device](tx, bucketDevices); err != nil {
			return err
		}
		if st.Commands, err = loadBucket[Command](tx, bucketCommands); err != nil {
			return err
		}
		st.Storms, err = loadBucket[Storm](tx, bucketStorms)
		return err
	})
	var (
		newer    *newerSchemaError
		unusable *UnusableError
	)
	switch {
	case errors.As(err, &newer):
		return State{}, fmt.Errorf("ledger %s: %w", b.path, err)
	case errors.As(err, &unusable):
		return State{}, err
	case errors.Is(err, errNotFleetd):
		return State{}, &UnusableError{Path: b.path, Problem: "is not a fleetd ledger", Err: err}
	case err != nil:
		return State{}, &UnusableError{Path: b.path, Problem: "is corrupt or unreadable", Err: err}
	}
	return st, nil
}

// errNotFleetd: a readable bbolt file without fleetd's meta bucket or
// schema version — some other program's database.
var errNotFleetd = errors.New("no fleetd schema version (a bbolt file of another program?)")

// checkLayout checks the buckets and the schema version.
func checkLayout(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil || meta.Get(keySchema) == nil {
		return errNotFleetd
	}
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
	v := meta.Get(keySchema)
	n, err := strconv.Atoi(string(v))
	switch {
	case err != nil || n < 1:
		return fmt.Errorf("invalid schema version %q", v)
	case n > schemaVersion:
		return &newerSchemaError{n}
	}
	return nil
}

func loadMeta(tx *bolt.Tx) (p Pause, err error) {
	err = tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error {
		switch string(k) {
		case string(keySchema):
		case string(keyPause):
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("meta/pause: decode: %w", err)
			}
		default:
			return fmt.Errorf("meta: unexpected key %q", k)
		}
		return nil
	})
	return p, err
}

// record is a ledger value that can check itself against its key.
type record interface{ valid(key string) bool }

// loadBucket decodes and validates every value of one bucket.
func loadBucket[T any, P interface {
	*T
	record
}](tx *bolt.Tx, name []byte) ([]T, error) {
	var out []T
	err := tx.Bucket(name).ForEach(func(k, v []byte) error {
		var r T
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%s/%q: decode: %w", name, k, err)
		}
		if !P(&r).valid(string(k)) {
			return fmt.Errorf("%s/%q: invalid record", name, k)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// newerSchemaError: the ledger was written by a newer fleetd.
type newerSchemaError struct{ version int }

func (e *newerSchemaError) Error() string {
	return fmt.Sprintf("schema version %d is newer than this fleetd understands (%d); upgrade fleetd", e.version, schemaVersion)
}

// UnusableError: an existing ledger file cannot be used. The file has been
// left as it was; the message says what to do.
type UnusableError struct {
	Path    string
	Problem string
	Err     error
}

func (e *UnusableError) Error() string {
	s := "ledger " + e.Path + " " + e.Problem
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s + "; it was left untouched: move it aside (or restore it from a backup) and start fleetd again — " +
		"a new ledger is created only where no file exists, and it has forgotten every attempt, cooldown and command in flight"
}

func (e *UnusableError) Unwrap() error { return e.Err }

// Apply writes ops in one transaction; bbolt fsyncs on commit, so when
// Apply returns nil the change survives a crash.
func (b *Bolt) Apply(ctx context.Context, ops ...Op) error {
	if len(ops) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.db.Update(func(tx *bolt.Tx) error { return applyOps(tx, ops) }); err != nil {
		return fmt.Errorf("write ledger %s: %w", b.path, err)
	}
	return nil
}

func applyOps(tx *bolt.Tx, ops []Op) error {
	for _, op := range ops {
		bk, key := tx.Bucket(op.kind.bucket()), []byte(op.key)
		if op.kind == opPause {
			key = keyPause
		}
		if op.value == nil {
			if err := bk.Delete(key); err != nil {
				return err
			}
			continue
		}
		if r, ok := op.value.(record); ok && !r.valid(op.key) {
			return fmt.Errorf("refusing to write an invalid record to %s/%q: %+v", op.kind.bucket(), op.key, op.value)
		}
		v, err := json.Marshal(op.value)
		if err != nil {
			return err
		}
		if err := bk.Put(key, v); err != nil {
			return err
		}
	}
	return nil
}

// Reserve re-checks the shared gates and records the attempt in one write
// transaction; bbolt runs one at a time, so concurrent Reserves see each
// other's attempts.
func (b *Bolt) Reserve(ctx context.Context, r Reservation) (Reserved, error) {
	if err := ctx.Err(); err != nil {
		return Reserved{}, err
	}
	var out Reserved
	err := b.db.Update(func(tx *bolt.Tx) error {
		ep, shared, err := sharedState(tx, r.Episode)
		if err != nil {
			return err
		}
		if out.Refused = policy.CheckShared(r.Limits, shared, r.Now); out.Refused != "" {
			return errRefused // roll back: a refusal writes nothing
		}
		ep, cmd := nextAttempt(ep, r)
		if tx.Bucket(bucketCommands).Get([]byte(cmd.Key())) != nil {
			// Attempt numbers only grow, but never overwrite the record of
			// a command that may exist.
			out.Refused = policy.ReasonInFlight
			return errRefused
		}
		out.Episode, out.Command = ep, cmd
		return applyOps(tx, []Op{PutEpisode(ep), PutDevice(Device{DeviceID: ep.DeviceID, LastSend: r.Now}), PutCommand(cmd)})
	})
	switch {
	case errors.Is(err, errRefused):
		return Reserved{Refused: out.Refused}, nil
	case err != nil:
		return Reserved{}, fmt.Errorf("write ledger %s: %w", b.path, err)
	}
	return out, nil
}

// Refund gives back an attempt never sent, in one write transaction (see
// Store.Refund).
func (b *Bolt) Refund(ctx context.Context, cmd Command, prevAttempt time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var refunded bool
	err := b.db.Update(func(tx *bolt.Tx) error {
		ep, err := mergedEpisode(tx, Episode{DeviceID: cmd.DeviceID, Fault: cmd.Fault, FirstSeen: cmd.FirstSeen})
		if err != nil {
			return err
		}
		var rec *Command
		if v := tx.Bucket(bucketCommands).Get([]byte(cmd.Key())); v != nil {
			rec = new(Command)
			if err := json.Unmarshal(v, rec); err != nil {
				return fmt.Errorf("commands/%q: decode: %w", cmd.Key(), err)
			}
		}
		var ops []Op
		ops, refunded = refundOps(cmd, prevAttempt, ep, rec)
		return applyOps(tx, ops)
	})
	if err != nil {
		return false, fmt.Errorf("write ledger %s: %w", b.path, err)
	}
	return refunded, nil
}

// errRefused aborts a Reserve transaction that a shared gate refused.
var errRefused = errors.New("reservation refused")

// sharedState reads what the shared gates need for one episode, and the
// episode as the ledger has it (Attempts 0 when it has none). Records of
// the pair under other first-seen times — left by a fleetd that keyed
// episodes by first-seen time — are one episode: their attempts add up
// under the earliest, and the others are deleted in this transaction.
func sharedState(tx *bolt.Tx, want Episode) (Episode, policy.Shared, error) {
	var s policy.Shared
	ep, err := mergedEpisode(tx, want)
	if err != nil {
		return ep, s, err
	}
	s.Attempts = ep.Attempts
	if v := tx.Bucket(bucketDevices).Get([]byte(ep.DeviceID)); v != nil {
		var d Device
		if err := json.Unmarshal(v, &d); err != nil {
			return ep, s, fmt.Errorf("devices/%q: decode: %w", ep.DeviceID, err)
		}
		s.LastSend = d.LastSend
	}
	err = tx.Bucket(bucketCommands).ForEach(func(k, v []byte) error {
		var c Command
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("commands/%q: decode: %w", k, err)
		}
		if c.InFlight() {
			s.InFlight++
			s.DeviceInFlight = s.DeviceInFlight || c.DeviceID == ep.DeviceID
		}
		return nil
	})
	return ep, s, err
}

// mergedEpisode finds the episode of (device, fault) by key prefix.
func mergedEpisode(tx *bolt.Tx, want Episode) (Episode, error) {
	ep := Episode{DeviceID: want.DeviceID, Fault: want.Fault, FirstSeen: want.FirstSeen}
	prefix := []byte(episodePrefix(want.DeviceID, want.Fault))
	var found []Episode
	c := tx.Bucket(bucketEpisodes).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var r Episode
		if err := json.Unmarshal(v, &r); err != nil {
			return ep, fmt.Errorf("episodes/%q: decode: %w", k, err)
		}
		found = append(found, r) // keys sort by device, fault, then first-seen digits
	}
	if len(found) == 0 {
		return ep, nil
	}
	slices.SortFunc(found, func(a, b Episode) int { return a.FirstSeen.Compare(b.FirstSeen) })
	ep = found[0]
	for _, r := range found[1:] {
		ep.Attempts += r.Attempts
		if r.LastAttempt.After(ep.LastAttempt) {
			ep.LastAttempt = r.LastAttempt
		}
		if err := tx.Bucket(bucketEpisodes).Delete([]byte(r.Key())); err != nil {
			return ep, err
		}
	}
	return ep, nil
}
