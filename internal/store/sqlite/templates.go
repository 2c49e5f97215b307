package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tasker-go/tasker/internal/store"
)

// TemplateRegister stores a definition and makes it current for its key.
func (s *Store) TemplateRegister(ctx context.Context, p *store.TemplateRegisterParams) (*store.Template, error) {
	if p.ID == "" || p.Namespace == "" || p.Name == "" || p.Version == "" || len(p.Definition) == 0 {
		return nil, errors.New("register template: id, namespace, name, version and definition are required")
	}
	var out *store.Template
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var current bool
		err := tx.QueryRowContext(ctx, "SELECT current FROM templates WHERE id = ?", p.ID).Scan(&current)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.ExecContext(ctx,
				"UPDATE templates SET current = 0 WHERE namespace = ? AND name = ? AND version = ? AND current = 1",
				p.Namespace, p.Name, p.Version); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx,
				"INSERT INTO templates (id, namespace, name, version, definition, current, registered_at) VALUES (?, ?, ?, ?, ?, 1, ?)",
				p.ID, p.Namespace, p.Name, p.Version, string(p.Definition), us(p.Now)); err != nil {
				return err
			}
		case err != nil:
			return err
		case !current:
			if _, err := tx.ExecContext(ctx,
				"UPDATE templates SET current = 0 WHERE namespace = ? AND name = ? AND version = ? AND current = 1",
				p.Namespace, p.Name, p.Version); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE templates SET current = 1 WHERE id = ?", p.ID); err != nil {
				return err
			}
		}
		out, err = templateByID(ctx, tx, p.ID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("register template %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	return out, nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const templateColumns = "id, namespace, name, version, definition, current, registered_at"

func scanTemplate(sc interface{ Scan(...any) error }) (*store.Template, error) {
	var (
		t   store.Template
		def string
		at  int64
	)
	if err := sc.Scan(&t.ID, &t.Namespace, &t.Name, &t.Version, &def, &t.Current, &at); err != nil {
		return nil, err
	}
	t.Definition = json.RawMessage(def)
	t.RegisteredAt = fromUS(at)
	return &t, nil
}

func templateByID(ctx context.Context, q queryer, id string) (*store.Template, error) {
	t, err := scanTemplate(q.QueryRowContext(ctx, "SELECT "+templateColumns+" FROM templates WHERE id = ?", id))
	if err != nil {
		return nil, notFound(err, "template "+id)
	}
	return t, nil
}

// TemplateGet returns a definition by digest.
func (s *Store) TemplateGet(ctx context.Context, id string) (*store.Template, error) {
	return templateByID(ctx, s.rdb, id)
}

// TemplateGetCurrent returns the current definition of a key.
func (s *Store) TemplateGetCurrent(ctx context.Context, namespace, name, version string) (*store.Template, error) {
	t, err := scanTemplate(s.rdb.QueryRowContext(ctx,
		"SELECT "+templateColumns+" FROM templates WHERE namespace = ? AND name = ? AND version = ? AND current = 1",
		namespace, name, version))
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("template %s/%s@%s", namespace, name, version))
	}
	return t, nil
}

// TemplateList returns every stored definition.
func (s *Store) TemplateList(ctx context.Context) ([]*store.Template, error) {
	return s.templates(ctx, "list templates",
		"SELECT "+templateColumns+" FROM templates ORDER BY namespace, name, version, registered_at")
}

// TemplateVersions returns the current definitions of namespace/name
// (templates_current_key).
func (s *Store) TemplateVersions(ctx context.Context, namespace, name string) ([]*store.Template, error) {
	return s.templates(ctx, fmt.Sprintf("versions of template %s/%s", namespace, name),
		"SELECT "+templateColumns+" FROM templates WHERE namespace = ? AND name = ? AND current = 1", namespace, name)
}

// templates reads the definitions a query selects; what names it in errors.
func (s *Store) templates(ctx context.Context, what, query string, args ...any) ([]*store.Template, error) {
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []*store.Template
	for rows.Next() {
		t, err := scanTemplate(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
