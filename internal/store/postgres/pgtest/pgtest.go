// Package pgtest gives tests a PostgreSQL database: the URL of the test
// server and fresh schemas that are dropped after each test.
//
// The server is TASKER_TEST_POSTGRES_URL, or the local one
// (postgres://root@127.0.0.1:5432/test). When it is unreachable, tests skip
// with a message, unless TASKER_TEST_POSTGRES_REQUIRED is set: then they
// fail, so CI cannot pass without running them.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the local test server.
const DefaultURL = "postgres://root@127.0.0.1:5432/test?sslmode=disable"

// URL returns the test server's URL, skipping (or failing, when required)
// the test if the server is unreachable.
func URL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("TASKER_TEST_POSTGRES_URL")
	if url == "" {
		url = DefaultURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		if os.Getenv("TASKER_TEST_POSTGRES_REQUIRED") != "" {
			t.Fatalf("PostgreSQL is required (TASKER_TEST_POSTGRES_REQUIRED) but unreachable at %s: %v", url, err)
		}
		t.Skipf("skipping: no PostgreSQL at %s (%v); set TASKER_TEST_POSTGRES_URL to run this test", url, err)
	}
	conn.Close(ctx)
	return url
}

var seq atomic.Int64

// Schema returns the name of a fresh schema for one test, and drops it with
// everything in it when the test ends.
func Schema(t testing.TB, url string) string {
	t.Helper()
	schema := fmt.Sprintf("test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1_000_000, seq.Add(1))
	t.Cleanup(func() { Drop(url, schema) })
	return schema
}

// Drop drops a schema with everything in it, ignoring errors.
func Drop(url, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
}
