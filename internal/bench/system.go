package bench

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgresVersion returns the server's version(), or "" when it cannot be
// read.
func postgresVersion(ctx context.Context, url string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return ""
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return ""
	}
	return v
}

// pgCommits returns the number of transactions committed in the current
// database so far (pg_stat_database), or -1 when it cannot be read or the
// database is not PostgreSQL. The statistics are updated when sessions
// report them, so a reading is taken after a short pause.
func pgCommits(ctx context.Context, url string) int64 {
	if url == "" {
		return -1
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return -1
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
		return -1
	}
	var n int64
	if err := conn.QueryRow(ctx, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").Scan(&n); err != nil {
		return -1
	}
	return n
}
