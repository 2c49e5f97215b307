// Package auth authenticates API requests and decides what they may do.
//
// Requests carry a bearer token: an opaque token created with "tasker token
// create" (only its SHA-256 is stored; it can expire and be revoked), or a
// JWT signed with the one asymmetric algorithm the server is configured for.
// A token has a role — viewer, operator or admin — and may be confined to
// one namespace: such a token sees nothing outside it (the server answers
// 404, as if it did not exist).
package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tasker-go/tasker"
)

// Role is what a principal may do, from least to most.
type Role string

// Roles.
const (
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleViewer, RoleOperator, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want viewer, operator or admin)", s)
}

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Permission is an action on a resource.
type Permission struct {
	Resource string
	Action   string
}

func (p Permission) String() string { return p.Resource + ":" + p.Action }

// Permissions of the API.
var (
	TemplatesRead     = Permission{"templates", "read"}
	TemplatesValidate = Permission{"templates", "validate"}
	TemplatesWrite    = Permission{"templates", "write"}
	TasksRead         = Permission{"tasks", "read"}
	TasksCreate       = Permission{"tasks", "create"}
	TasksCancel       = Permission{"tasks", "cancel"}
	TasksRetry        = Permission{"tasks", "retry"}
	TasksResolve      = Permission{"tasks", "resolve"}
	StepsRead         = Permission{"steps", "read"}
	StepsReset        = Permission{"steps", "reset"}
	StepsResolve      = Permission{"steps", "resolve"}
	StepsCancel       = Permission{"steps", "cancel"}
	EventsRead        = Permission{"events", "read"}
	AnalyticsRead     = Permission{"analytics", "read"}
	MetricsRead       = Permission{"metrics", "read"}
	WebhooksRead      = Permission{"webhooks", "read"}
	DeliveriesRetry   = Permission{"deliveries", "retry"}
	SessionRead       = Permission{"session", "read"}
)

// Permissions returns every permission of the API.
func Permissions() []Permission {
	return []Permission{TemplatesRead, TemplatesValidate, TemplatesWrite, TasksRead, TasksCreate, TasksCancel, TasksRetry, TasksResolve,
		StepsRead, StepsReset, StepsResolve, StepsCancel, EventsRead, AnalyticsRead, MetricsRead, WebhooksRead, DeliveriesRetry, SessionRead}
}

// MinimumRole returns the least role that holds a permission.
func MinimumRole(p Permission) Role {
	switch p {
	case TemplatesRead, TasksRead, StepsRead, EventsRead, AnalyticsRead, MetricsRead, WebhooksRead, SessionRead:
		return RoleViewer
	case TemplatesValidate, TasksCreate, TasksCancel, TasksRetry, TasksResolve, StepsReset, StepsResolve, StepsCancel, DeliveriesRetry:
		return RoleOperator
	case TemplatesWrite:
		return RoleAdmin
	}
	return "" // unknown permissions are denied
}

// Principal is who made a request.
type Principal struct {
	// ID identifies the credential: a token id, or the JWT subject.
	ID string
	// Name is a human name for logs and the audit trail.
	Name string
	Role Role
	// Namespace, when set, confines the principal to one namespace.
	Namespace string
}

// Can reports whether the principal holds a permission.
func (p *Principal) Can(perm Permission) bool {
	need := MinimumRole(perm)
	return need != "" && p.Role.rank() >= need.rank()
}

// Sees reports whether the principal may see resources of a namespace.
func (p *Principal) Sees(namespace string) bool {
	return p.Namespace == "" || p.Namespace == namespace
}

// Actor is how the principal is named in the audit trail.
func (p *Principal) Actor() string {
	if p.Name != "" {
		return p.Name + " (" + p.ID + ")"
	}
	return p.ID
}

// Authentication errors. All of them mean 401.
var (
	ErrNoCredentials = errors.New("no bearer token")
	ErrMalformed     = errors.New("malformed bearer token")
	ErrUnknown       = errors.New("unknown token")
	ErrExpired       = errors.New("token expired")
	ErrRevoked       = errors.New("token revoked")
)

// TokenStore finds tokens by their secret (*tasker.Client does).
type TokenStore interface {
	LookupToken(ctx context.Context, secret string) (*tasker.Token, error)
}

// Authenticator turns an Authorization header into a principal.
type Authenticator struct {
	tokens TokenStore
	jwt    *JWTVerifier
	now    func() time.Time
}

// NewAuthenticator authenticates opaque tokens against tokens and, when
// jwt is not nil, JWTs with it.
func NewAuthenticator(tokens TokenStore, jwt *JWTVerifier, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{tokens: tokens, jwt: jwt, now: now}
}

// Authenticate checks the value of an Authorization header.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (*Principal, error) {
	if header == "" {
		return nil, ErrNoCredentials
	}
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(cred) == "" {
		return nil, fmt.Errorf("%w: want \"Authorization: Bearer TOKEN\"", ErrMalformed)
	}
	cred = strings.TrimSpace(cred)
	if strings.HasPrefix(cred, "tsk_") {
		return a.opaque(ctx, cred)
	}
	if strings.Count(cred, ".") == 2 {
		if a.jwt == nil {
			return nil, fmt.Errorf("%w: JWTs are not accepted by this server", ErrMalformed)
		}
		return a.jwt.Verify(cred, a.now())
	}
	return nil, ErrMalformed
}

func (a *Authenticator) opaque(ctx context.Context, secret string) (*Principal, error) {
	if !tasker.IsTokenSecret(secret) {
		return nil, ErrMalformed
	}
	t, err := a.tokens.LookupToken(ctx, secret)
	if errors.Is(err, tasker.ErrNotFound) {
		return nil, ErrUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	now := a.now()
	switch {
	case !t.RevokedAt.IsZero():
		return nil, ErrRevoked
	case !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt):
		return nil, ErrExpired
	}
	role, err := ParseRole(t.Role)
	if err != nil {
		return nil, fmt.Errorf("token %s: %w", t.ID, err)
	}
	return &Principal{ID: t.ID, Name: t.Name, Role: role, Namespace: t.Namespace}, nil
}
