package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/internal/store"
)

const templateColumns = "id, namespace, name, version, definition::text, current, registered_at"

func scanTemplate(row pgx.Row) (*store.Template, error) {
	var (
		t   store.Template
		def string
	)
	if err := row.Scan(&t.ID, &t.Namespace, &t.Name, &t.Version, &def, &t.Current, &t.RegisteredAt); err != nil {
		return nil, err
	}
	t.Definition = json.RawMessage(def)
	t.RegisteredAt = t.RegisteredAt.UTC()
	return &t, nil
}

// TemplateRegister stores a definition and makes it current for its key.
func (s *Store) TemplateRegister(ctx context.Context, p *store.TemplateRegisterParams) (*store.Template, error) {
	if p.ID == "" || p.Namespace == "" || p.Name == "" || p.Version == "" || len(p.Definition) == 0 {
		return nil, errors.New("register template: id, namespace, name, version and definition are required")
	}
	var out *store.Template
	_, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, _ *change) error {
		// Serialize registrations of one key.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
			p.Namespace+"/"+p.Name+"@"+p.Version); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE templates SET current = false
			WHERE namespace = $1 AND name = $2 AND version = $3 AND current AND id <> $4`,
			p.Namespace, p.Name, p.Version, p.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO templates (id, namespace, name, version, definition, current, registered_at)
			VALUES ($1, $2, $3, $4, $5::json, true, $6)
			ON CONFLICT (id) DO UPDATE SET current = true`,
			p.ID, p.Namespace, p.Name, p.Version, string(p.Definition), p.Now.UTC()); err != nil {
			return err
		}
		t, err := scanTemplate(tx.QueryRow(ctx, "SELECT "+templateColumns+" FROM templates WHERE id = $1", p.ID))
		out = t
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("register template %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	return out, nil
}

// TemplateGet returns a definition by digest.
func (s *Store) TemplateGet(ctx context.Context, id string) (*store.Template, error) {
	t, err := scanTemplate(s.pool.QueryRow(ctx, "SELECT "+templateColumns+" FROM templates WHERE id = $1", id))
	if err != nil {
		return nil, notFound(err, "template "+id)
	}
	return t, nil
}

// TemplateGetCurrent returns the current definition of a key.
func (s *Store) TemplateGetCurrent(ctx context.Context, namespace, name, version string) (*store.Template, error) {
	t, err := scanTemplate(s.pool.QueryRow(ctx, "SELECT "+templateColumns+
		" FROM templates WHERE namespace = $1 AND name = $2 AND version = $3 AND current", namespace, name, version))
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("template %s/%s@%s", namespace, name, version))
	}
	return t, nil
}

// TemplateVersions returns the current definitions of namespace/name
// (templates_current_key).
func (s *Store) TemplateVersions(ctx context.Context, namespace, name string) ([]*store.Template, error) {
	return s.templates(ctx, fmt.Sprintf("versions of template %s/%s", namespace, name),
		"SELECT "+templateColumns+" FROM templates WHERE namespace = $1 AND name = $2 AND current", namespace, name)
}

// TemplateList returns every stored definition.
func (s *Store) TemplateList(ctx context.Context) ([]*store.Template, error) {
	return s.templates(ctx, "list templates",
		"SELECT "+templateColumns+" FROM templates ORDER BY namespace, name, version, registered_at")
}

// templates reads the definitions a query selects; what names it in errors.
func (s *Store) templates(ctx context.Context, what, query string, args ...any) ([]*store.Template, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Template, error) { return scanTemplate(r) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
