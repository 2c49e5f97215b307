package tasker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

// Token is an API bearer token of the server. Its secret is shown once,
// when it is created; only its SHA-256 is stored.
type Token struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Role is viewer, operator or admin.
	Role string `json:"role"`
	// Namespace, when set, confines the token to one namespace.
	Namespace string    `json:"namespace,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// TokenRequest asks for a new token.
type TokenRequest struct {
	Name string
	// Role is viewer, operator or admin.
	Role string
	// Namespace confines the token to one namespace; empty for all.
	Namespace string
	// ExpiresIn makes the token expire; zero for never.
	ExpiresIn time.Duration
}

// TokenCreated is a new token with its secret, which is not stored and
// cannot be shown again.
type TokenCreated struct {
	Token  *Token `json:"token"`
	Secret string `json:"secret"`
}

// tokenPrefix marks Tasker's opaque tokens: "tsk_" + 12 hex id + "_" + secret.
const tokenPrefix = "tsk_"

// IsTokenSecret reports whether s has the shape of a token secret.
func IsTokenSecret(s string) bool {
	parts := strings.SplitN(s, "_", 3)
	if len(parts) != 3 || parts[0]+"_" != tokenPrefix || len(parts[1]) != 12 || len(parts[2]) < 16 || len(s) > 200 {
		return false
	}
	_, err := hex.DecodeString(parts[1])
	return err == nil
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// CreateToken creates an API token for the server.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (*TokenCreated, error) {
	switch req.Role {
	case "viewer", "operator", "admin":
	default:
		return nil, fmt.Errorf("tasker: create token: role must be viewer, operator or admin, not %q: %w", req.Role, ErrInvalidRequest)
	}
	if req.ExpiresIn < 0 {
		return nil, fmt.Errorf("tasker: create token: negative expiry: %w", ErrInvalidRequest)
	}
	if len(req.Name) > 128 || len(req.Namespace) > 64 {
		return nil, fmt.Errorf("tasker: create token: name or namespace too long: %w", ErrInvalidRequest)
	}
	var idb [6]byte
	var sb [24]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(sb[:]); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(idb[:])
	secret := tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(sb[:])
	if req.Name == "" {
		req.Name = "token " + id
	}
	now := c.clock.Now()
	var expires time.Time
	if req.ExpiresIn > 0 {
		expires = now.Add(req.ExpiresIn)
	}
	t, err := c.store.TokenCreate(ctx, &store.TokenCreateParams{ID: id, Name: req.Name, Role: req.Role, Namespace: req.Namespace,
		Hash: hashSecret(secret), ExpiresAt: expires, Now: now})
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	return &TokenCreated{Token: tokenFromStore(t), Secret: secret}, nil
}

// Tokens lists the API tokens, newest first.
func (c *Client) Tokens(ctx context.Context) ([]*Token, error) {
	list, err := c.store.TokenList(ctx)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	out := make([]*Token, len(list))
	for i, t := range list {
		out[i] = tokenFromStore(t)
	}
	return out, nil
}

// RevokeToken revokes a token; revoking it again changes nothing.
func (c *Client) RevokeToken(ctx context.Context, id string) (*Token, error) {
	t, err := c.store.TokenRevoke(ctx, id, c.clock.Now())
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	return tokenFromStore(t), nil
}

// LookupToken returns the token a secret belongs to, whatever its state
// (check ExpiresAt and RevokedAt), or ErrNotFound.
func (c *Client) LookupToken(ctx context.Context, secret string) (*Token, error) {
	if !IsTokenSecret(secret) {
		return nil, fmt.Errorf("tasker: not a token secret: %w", ErrNotFound)
	}
	t, err := c.store.TokenGetByHash(ctx, hashSecret(secret))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("tasker: token: %w", ErrNotFound)
		}
		return nil, fmt.Errorf("tasker: %w", err)
	}
	return tokenFromStore(t), nil
}

func tokenFromStore(t *store.Token) *Token {
	return &Token{ID: t.ID, Name: t.Name, Role: t.Role, Namespace: t.Namespace, CreatedAt: t.CreatedAt,
		ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt}
}
