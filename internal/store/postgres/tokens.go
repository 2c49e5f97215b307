package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/internal/store"
)

const tokenColumns = "id, name, role, namespace, hash, created_at, expires_at, revoked_at"

func scanToken(row pgx.Row) (*store.Token, error) {
	var (
		t                  store.Token
		namespace          *string
		expires, revokedAt *time.Time
	)
	if err := row.Scan(&t.ID, &t.Name, &t.Role, &namespace, &t.Hash, &t.CreatedAt, &expires, &revokedAt); err != nil {
		return nil, err
	}
	t.Namespace = deref(namespace)
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = t.CreatedAt.UTC(), utc(expires), utc(revokedAt)
	return &t, nil
}

// TokenCreate stores a new API token. A token whose id or hash is taken
// is an ErrConflict.
func (s *Store) TokenCreate(ctx context.Context, p *store.TokenCreateParams) (*store.Token, error) {
	if err := store.ValidateTokenCreate(p); err != nil {
		return nil, err
	}
	t, err := scanToken(s.pool.QueryRow(ctx, `INSERT INTO tokens (id, name, role, namespace, hash, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+tokenColumns,
		p.ID, p.Name, p.Role, nullString(p.Namespace), p.Hash, p.Now.UTC(), nullTime(p.ExpiresAt)))
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
			return nil, fmt.Errorf("create token %s: already exists: %w", p.ID, store.ErrConflict)
		}
		return nil, fmt.Errorf("create token %s: %w", p.ID, err)
	}
	return t, nil
}

// TokenGetByHash returns the token whose secret hashes to hash.
func (s *Store) TokenGetByHash(ctx context.Context, hash string) (*store.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE hash = $1", hash))
	if err != nil {
		return nil, notFound(err, "token by hash")
	}
	return t, nil
}

// TokenList returns every token, newest first.
func (s *Store) TokenList(ctx context.Context) ([]*store.Token, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+tokenColumns+" FROM tokens ORDER BY created_at DESC, id DESC")
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Token, error) { return scanToken(r) })
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// TokenRevoke revokes a token at now; revoking it again keeps the first
// revocation time.
func (s *Store) TokenRevoke(ctx context.Context, id string, now time.Time) (*store.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx,
		"UPDATE tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING "+tokenColumns, id, now.UTC()))
	if err != nil {
		return nil, fmt.Errorf("revoke token: %w", notFound(err, "token "+id))
	}
	return t, nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}
