package store

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// bbolt's file layout, as far as checkHeader reads it: each of the two
// meta pages starts with a 16-byte page header followed by the magic
// number, the format version and the page size.
const (
	boltMagic      = 0xED0CDAED
	boltPageHeader = 16
	// A bbolt file has at least four pages: two meta pages, the freelist
	// and the root.
	boltMinPages = 4
)

// checkHeader refuses, without opening it as a database, a file that
// cannot be a ledger: empty, shorter than the smallest bbolt file, or
// without a bbolt meta page. bbolt would initialise an empty file opened for
// writing, so this runs before any open.
func checkHeader(path string, size int64) error {
	if size == 0 {
		return &UnusableError{Path: path, Problem: "is empty (0 bytes), not a ledger"}
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("ledger %s: %w", path, err)
	}
	defer f.Close()
	pageSize, ok := metaPageSize(f, 0)
	if !ok {
		// bbolt falls back to the second meta page, which sits one OS page
		// in when the first is damaged.
		pageSize, ok = metaPageSize(f, int64(os.Getpagesize()))
	}
	switch {
	case !ok && size < boltPageHeader+12:
		return &UnusableError{Path: path, Problem: fmt.Sprintf("is corrupt: too short to be a ledger (%d bytes)", size)}
	case !ok:
		return &UnusableError{Path: path, Problem: "is corrupt or not a ledger: it has no bbolt meta page"}
	case size < boltMinPages*int64(pageSize):
		return &UnusableError{Path: path, Problem: fmt.Sprintf("is corrupt: too short to be a ledger (%d bytes; the smallest holds %d)",
			size, boltMinPages*pageSize)}
	}
	return nil
}

// metaPageSize reads a meta page at off and returns its page size if the
// magic number and a plausible page size are there.
func metaPageSize(r io.ReaderAt, off int64) (int, bool) {
	var b [boltPageHeader + 12]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return 0, false
	}
	magic := binary.NativeEndian.Uint32(b[boltPageHeader:])
	ps := binary.NativeEndian.Uint32(b[boltPageHeader+8:])
	if magic != boltMagic || ps < 512 || ps > 1<<20 || ps&(ps-1) != 0 {
		return 0, false
	}
	return int(ps), true
}
