// Package pgtest starts a throwaway PostgreSQL cluster for tests: initdb and
// pg_ctl from Debian's postgresql package, in a temporary directory, on a free
// loopback port, with fsync off. Under plain `go test` a machine without
// PostgreSQL skips those tests; with FLEETD_REQUIRE_REAL=1 (the README's test
// command and CI) a missing server fails them, like every real program the
// suite drives (internal/realprog).
//
// PostgreSQL refuses to run as root, so when the tests run as root the server
// programs run as the `postgres` user the Debian package creates.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fleetd/fleetd/internal/realprog"
)

// User is the superuser of every throwaway cluster.
const User = "fleetd"

// Cluster is one running throwaway PostgreSQL server.
type Cluster struct {
	t        testing.TB
	bin      string // directory holding initdb, pg_ctl, postgres
	dir      string // data, socket and log live below it
	port     int
	password string
	runAs    string // "" or the user the server programs run as
}

// Start initialises and starts a cluster that is stopped and removed when the
// test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	candidates := []string{"initdb"}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		slices.Sort(m)
		slices.Reverse(m) // newest major version first
		candidates = append(candidates, m...)
	}
	initdb := realprog.Find(t, candidates...)
	if real, err := filepath.EvalSymlinks(initdb); err == nil {
		initdb = real
	}
	c := &Cluster{t: t, bin: filepath.Dir(initdb), password: randomHex(t, 16)}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			t.Fatalf("pgtest: running as root needs the postgres user of Debian's postgresql package: %v", err)
		}
		c.runAs = "postgres"
	}
	dir, err := os.MkdirTemp("", "fleetd-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	t.Cleanup(func() {
		c.stop("immediate")
		os.RemoveAll(dir)
	})
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(c.password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.runAs != "" {
		// The server runs as postgres: hand it the directory.
		if out, err := exec.Command("chown", "-R", c.runAs, dir).CombinedOutput(); err != nil {
			t.Fatalf("pgtest: chown %s: %v: %s", dir, err, out)
		}
	}
	c.run("initdb", "-D", c.data(), "-U", User, "--pwfile", pwfile,
		"--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync", "--locale=C")
	os.Remove(pwfile)
	c.port = freePort(t)
	c.Restart()
	return c
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// Port is the loopback TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// Password is the superuser's password, for tests that put it in a file.
func (c *Cluster) Password() string { return c.password }

// DSN returns a connection string for database db with the password in it.
func (c *Cluster) DSN(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(User, c.password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// NewDatabase creates a fresh, empty database and returns its DSN, so tests
// sharing one cluster never see each other's tables.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := "t_" + randomHex(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return c.DSN(name)
}

// Stop stops the server at once (immediate shutdown: connections are cut,
// as when a database host fails).
func (c *Cluster) Stop() { c.stop("immediate") }

// Restart starts the server (again) on the same port and waits until it
// accepts connections.
func (c *Cluster) Restart() {
	c.t.Helper()
	opts := strings.Join([]string{
		"-p", strconv.Itoa(c.port),
		"-k", c.dir,
		"-c", "listen_addresses=127.0.0.1",
		// fsync off is safe for a test server: only the process is ever killed, never the
		// machine, so the page cache keeps every commit. synchronous_commit stays on:
		// the database-loss tests need what was committed to survive.
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200",
	}, " ")
	c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "log"), "-o", opts, "-w", "-t", "60", "start")
}

func (c *Cluster) stop(mode string) {
	if _, err := os.Stat(filepath.Join(c.data(), "postmaster.pid")); err != nil {
		return
	}
	c.command("pg_ctl", "-D", c.data(), "-m", mode, "-w", "stop").Run()
}

func (c *Cluster) command(prog string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, prog)
	if c.runAs != "" {
		return exec.Command("runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (c *Cluster) run(prog string, args ...string) {
	c.t.Helper()
	cmd := c.command(prog, args...)
	cmd.Dir = c.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		c.t.Fatalf("pgtest: %s: %v\n%s\n%s", prog, err, out, log)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// String names the cluster without its password.
func (c *Cluster) String() string { return fmt.Sprintf("postgresql on 127.0.0.1:%d", c.port) }
