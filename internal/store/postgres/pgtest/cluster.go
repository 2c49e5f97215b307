package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a throwaway PostgreSQL server for tests that stop or crash
// it, so they never touch the shared server. It runs as the postgres user
// when the test runs as root (PostgreSQL refuses to run as root).
type Cluster struct {
	t       testing.TB
	bin     string
	dir     string
	data    string
	port    int
	runAs   string // "" to run as the current user
	started bool
}

// StartCluster initializes and starts a new cluster on a free port, and
// stops it and removes its files when the test ends. It skips the test
// when the server binaries are missing, unless TASKER_TEST_POSTGRES_REQUIRED
// is set.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("TASKER_TEST_POSTGRES_REQUIRED") != "" {
		skip = t.Fatalf
	}
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		skip("skipping: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin to start a throwaway cluster")
		return nil
	}
	sort.Strings(bins)
	c := &Cluster{t: t, bin: filepath.Dir(bins[len(bins)-1])}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			skip("skipping: running as root and there is no postgres user to run a throwaway cluster")
			return nil
		}
		c.runAs = "postgres"
	}
	dir, err := os.MkdirTemp("", "tasker-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	c.data = filepath.Join(dir, "data")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if c.runAs != "" {
		u, _ := user.Lookup(c.runAs)
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if c.started {
			_ = c.run("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop")
		}
		os.RemoveAll(dir)
	})
	if err := c.run("initdb", "-D", c.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v", err)
	}
	c.port = freePort(t)
	c.Start()
	return c
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

func (c *Cluster) run(name string, args ...string) error {
	path := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if c.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w\n%s", name, args, err, out)
	}
	return nil
}

// URL is the cluster's connection URL.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start() {
	c.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", c.port, c.dir)
	if err := c.run("pg_ctl", "-D", c.data, "-o", opts, "-l", filepath.Join(c.dir, "server.log"), "-w", "start"); err != nil {
		c.t.Fatalf("start: %v", err)
	}
	c.started = true
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.URL())
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster does not accept connections: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StopImmediate stops the server without a clean shutdown, like a crash:
// connections are cut and uncommitted transactions are lost.
func (c *Cluster) StopImmediate() {
	c.t.Helper()
	if err := c.run("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop"); err != nil {
		c.t.Fatalf("stop: %v", err)
	}
	c.started = false
}
