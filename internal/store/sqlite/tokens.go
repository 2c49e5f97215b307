package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

const tokenColumns = "id, name, role, namespace, hash, created_at, expires_at, revoked_at"

func scanToken(sc interface{ Scan(...any) error }) (*store.Token, error) {
	var (
		t                  store.Token
		namespace          sql.NullString
		created            int64
		expires, revokedAt sql.NullInt64
	)
	if err := sc.Scan(&t.ID, &t.Name, &t.Role, &namespace, &t.Hash, &created, &expires, &revokedAt); err != nil {
		return nil, err
	}
	t.Namespace = namespace.String
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromUS(created), fromNullUS(expires), fromNullUS(revokedAt)
	return &t, nil
}

// TokenCreate stores a new API token. A token whose id or hash is taken
// is an ErrConflict.
func (s *Store) TokenCreate(ctx context.Context, p *store.TokenCreateParams) (*store.Token, error) {
	if err := store.ValidateTokenCreate(p); err != nil {
		return nil, err
	}
	var out *store.Token
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t, err := scanToken(tx.QueryRowContext(ctx, `INSERT INTO tokens (id, name, role, namespace, hash, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING `+tokenColumns,
			p.ID, p.Name, p.Role, nullString(p.Namespace), p.Hash, us(p.Now), nullUS(p.ExpiresAt)))
		if err != nil {
			return s.uniqueConflict(err)
		}
		out = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create token %s: %w", p.ID, err)
	}
	return out, nil
}

// uniqueConflict reports a violated primary key or unique constraint as
// store.ErrConflict.
func (s *Store) uniqueConflict(err error) error {
	if s.drv.uniqueViolation(err) {
		return fmt.Errorf("already exists: %w", store.ErrConflict)
	}
	return err
}

// TokenGetByHash returns the token whose secret hashes to hash.
func (s *Store) TokenGetByHash(ctx context.Context, hash string) (*store.Token, error) {
	t, err := scanToken(s.rdb.QueryRowContext(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE hash = ?", hash))
	if err != nil {
		return nil, notFound(err, "token by hash")
	}
	return t, nil
}

// TokenList returns every token, newest first.
func (s *Store) TokenList(ctx context.Context) ([]*store.Token, error) {
	rows, err := s.rdb.QueryContext(ctx, "SELECT "+tokenColumns+" FROM tokens ORDER BY created_at DESC, id DESC")
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []*store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// TokenRevoke revokes a token at now; revoking it again keeps the first
// revocation time.
func (s *Store) TokenRevoke(ctx context.Context, id string, now time.Time) (*store.Token, error) {
	var out *store.Token
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t, err := scanToken(tx.QueryRowContext(ctx,
			"UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING "+tokenColumns, us(now), id))
		if err != nil {
			return notFound(err, "token "+id)
		}
		out = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("revoke token: %w", err)
	}
	return out, nil
}
