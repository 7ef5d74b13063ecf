// Package memlimit sets the Go runtime's soft memory limit from the
// container's cgroup memory limit when GOMEMLIMIT is not set, as
// github.com/KimMachineGun/automemlimit does: the collector then works
// harder as the heap nears the container's limit instead of the kernel
// killing the process. The limit is a fraction (default 90 %) of the cgroup
// limit, so the runtime's own memory outside the heap has room; the
// runtime's GC CPU limiter (at most about half the CPU for collection) keeps
// a working set near the limit from turning into a collection loop.
package memlimit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultRatio is the share of the cgroup limit given to GOMEMLIMIT.
const DefaultRatio = 0.9

// unlimitedV1 is where cgroup v1 reports "no limit" (the largest page-aligned
// int64); anything at or above it is no limit.
const unlimitedV1 = 1 << 62

// Options configure Apply. Zero values take the real process's.
type Options struct {
	// Ratio of the cgroup limit to set; DefaultRatio when 0.
	Ratio float64
	// ProcSelf is the directory holding cgroup and mountinfo; /proc/self
	// when empty (tests point it at a fake tree).
	ProcSelf string
	// Getenv reads the environment; os.Getenv when nil.
	Getenv func(string) string
	// SetMemoryLimit sets the limit; debug.SetMemoryLimit when nil.
	SetMemoryLimit func(int64) int64
	Logger         *slog.Logger
}

// Apply sets the soft memory limit from the cgroup limit unless GOMEMLIMIT
// is set, and returns the limit it set (0 when it set none).
func Apply(o Options) (int64, error) {
	if o.Ratio <= 0 || o.Ratio > 1 {
		o.Ratio = DefaultRatio
	}
	if o.ProcSelf == "" {
		o.ProcSelf = "/proc/self"
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.SetMemoryLimit == nil {
		o.SetMemoryLimit = debug.SetMemoryLimit
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if v := o.Getenv("GOMEMLIMIT"); v != "" {
		o.Logger.Debug("GOMEMLIMIT set in the environment; the cgroup limit is not consulted", "gomemlimit", v)
		return 0, nil
	}
	cg, err := CgroupLimit(o.ProcSelf)
	if err != nil {
		return 0, err
	}
	if cg == 0 {
		o.Logger.Debug("no cgroup memory limit; no soft memory limit set")
		return 0, nil
	}
	limit := int64(float64(cg) * o.Ratio)
	o.SetMemoryLimit(limit)
	o.Logger.Info("soft memory limit set from the cgroup limit", "cgroup_limit_bytes", cg, "gomemlimit_bytes", limit, "ratio", o.Ratio)
	return limit, nil
}

// CgroupLimit returns the memory limit of the process's cgroup in bytes:
// cgroup v2 memory.max or, failing that, cgroup v1
// memory.limit_in_bytes, the smallest along the path from the process's
// cgroup up to the hierarchy's root (a parent's limit binds its children).
// 0 means no limit, or no cgroup memory controller.
func CgroupLimit(procSelf string) (int64, error) {
	cgroups, err := os.ReadFile(filepath.Join(procSelf, "cgroup"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil // not Linux, or no /proc
	}
	if err != nil {
		return 0, fmt.Errorf("memlimit: %w", err)
	}
	mounts, err := os.ReadFile(filepath.Join(procSelf, "mountinfo"))
	if err != nil {
		return 0, fmt.Errorf("memlimit: %w", err)
	}
	v2Path, v1Path, haveV2, haveV1 := parseCgroups(cgroups)
	var v2Mount, v1Mount *mount
	for _, m := range parseMountinfo(mounts) {
		switch {
		case m.fstype == "cgroup2" && v2Mount == nil:
			v2Mount = &m
		case m.fstype == "cgroup" && v1Mount == nil && hasOption(m.superOpts, "memory"):
			v1Mount = &m
		}
	}
	if haveV2 && v2Mount != nil {
		if l, found, err := walk(*v2Mount, v2Path, "memory.max"); err != nil || found {
			return l, err
		}
	}
	if haveV1 && v1Mount != nil {
		l, _, err := walk(*v1Mount, v1Path, "memory.limit_in_bytes")
		return l, err
	}
	return 0, nil
}

// parseCgroups reads /proc/self/cgroup: "0::/path" is the v2 hierarchy,
// "N:memory,...:/path" the v1 memory controller.
func parseCgroups(b []byte) (v2, v1 string, haveV2, haveV1 bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2, haveV2 = parts[2], true
			continue
		}
		if hasOption(parts[1], "memory") {
			v1, haveV1 = parts[2], true
		}
	}
	return v2, v1, haveV2, haveV1
}

type mount struct {
	root, point, fstype, superOpts string
}

// parseMountinfo reads /proc/self/mountinfo (proc(5)): field 4 is the
// mount's root, field 5 its mount point; after " - " come the file system
// type, the source and the super options.
func parseMountinfo(b []byte) []mount {
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		out = append(out, mount{root: unescape(f[3]), point: unescape(f[4]), fstype: g[0], superOpts: g[2]})
	}
	return out
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hasOption(list, opt string) bool {
	for o := range strings.SplitSeq(list, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// walk reads file in the cgroup's directory and each parent up to the
// mount point and returns the smallest limit; found is false when no level
// had the file.
func walk(m mount, cgPath, file string) (limit int64, found bool, err error) {
	rel := cgPath
	if m.root != "/" {
		// The mount shows a subtree (e.g. inside a container without a
		// cgroup namespace): the path is relative to that subtree.
		r, ok := strings.CutPrefix(cgPath, m.root)
		if !ok {
			r = "/"
		}
		rel = r
	}
	dir := filepath.Join(m.point, filepath.FromSlash(rel))
	if !strings.HasPrefix(dir, filepath.Clean(m.point)) {
		dir = m.point
	}
	for {
		l, ok, err := readLimit(filepath.Join(dir, file))
		if err != nil {
			return 0, false, err
		}
		if ok {
			found = true
			if l > 0 && (limit == 0 || l < limit) {
				limit = l
			}
		}
		if dir == filepath.Clean(m.point) {
			return limit, found, nil
		}
		dir = filepath.Dir(dir)
	}
}

// readLimit reads one limit file: "max" or a v1 value at or above 2^62 is
// no limit (0).
func readLimit(path string) (int64, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("memlimit: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, true, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("memlimit: %s: %q is not a byte count", path, s)
	}
	if n >= unlimitedV1 || n > math.MaxInt64 {
		return 0, true, nil
	}
	return int64(n), true, nil
}
