package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tasker-go/tasker"
)

// tokens is an in-memory TokenStore keyed by secret.
type tokens map[string]*tasker.Token

func (m tokens) LookupToken(_ context.Context, secret string) (*tasker.Token, error) {
	if t, ok := m[secret]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("lookup: %w", tasker.ErrNotFound)
}

const (
	good    = "tsk_0123456789ab_abcdefghijklmnopqrstuvwxyz012345"
	expired = "tsk_0123456789ac_abcdefghijklmnopqrstuvwxyz012345"
	revoked = "tsk_0123456789ad_abcdefghijklmnopqrstuvwxyz012345"
	unknown = "tsk_0123456789ae_abcdefghijklmnopqrstuvwxyz012345"
)

func TestOpaqueTokens(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	store := tokens{
		good:    {ID: "0123456789ab", Name: "ci", Role: "operator", Namespace: "payments"},
		expired: {ID: "0123456789ac", Role: "admin", ExpiresAt: now},
		revoked: {ID: "0123456789ad", Role: "admin", RevokedAt: now.Add(-time.Hour)},
	}
	a := NewAuthenticator(store, nil, func() time.Time { return now })
	tests := []struct {
		header string
		want   error
	}{
		{"", ErrNoCredentials},
		{"Basic dXNlcjpwYXNz", ErrMalformed},
		{"Bearer", ErrMalformed},
		{"Bearer    ", ErrMalformed},
		{"Bearer garbage", ErrMalformed},
		{"Bearer tsk_short", ErrMalformed},
		{"Bearer tsk_zzzzzzzzzzzz_abcdefghijklmnopqrstuvwxyz", ErrMalformed},
		{"Bearer a.b.c", ErrMalformed}, // a JWT, but this server takes none
		{"Bearer " + unknown, ErrUnknown},
		{"Bearer " + expired, ErrExpired},
		{"Bearer " + revoked, ErrRevoked},
	}
	for _, tc := range tests {
		if _, err := a.Authenticate(context.Background(), tc.header); !errors.Is(err, tc.want) {
			t.Errorf("Authenticate(%q) err = %v, want %v", tc.header, err, tc.want)
		}
	}
	p, err := a.Authenticate(context.Background(), "bearer "+good)
	if err != nil || p.ID != "0123456789ab" || p.Role != RoleOperator || p.Namespace != "payments" || p.Actor() != "ci (0123456789ab)" {
		t.Fatalf("Authenticate(good) = %+v, %v", p, err)
	}
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	reads := []Permission{TemplatesRead, TasksRead, StepsRead, EventsRead, AnalyticsRead, MetricsRead, WebhooksRead, SessionRead}
	ops := []Permission{TemplatesValidate, TasksCreate, TasksCancel, TasksRetry, TasksResolve, StepsReset, StepsResolve, StepsCancel, DeliveriesRetry}
	admin := []Permission{TemplatesWrite}
	check := func(role Role, perms []Permission, want bool) {
		p := &Principal{Role: role}
		for _, perm := range perms {
			if got := p.Can(perm); got != want {
				t.Errorf("%s can %s = %v, want %v", role, perm, got, want)
			}
		}
	}
	check(RoleViewer, reads, true)
	check(RoleViewer, ops, false)
	check(RoleViewer, admin, false)
	check(RoleOperator, reads, true)
	check(RoleOperator, ops, true)
	check(RoleOperator, admin, false)
	check(RoleAdmin, append(append(reads, ops...), admin...), true)
	if n := len(reads) + len(ops) + len(admin); n != len(Permissions()) {
		t.Errorf("Permissions() lists %d permissions, the test knows %d", len(Permissions()), n)
	}
	if (&Principal{Role: RoleAdmin}).Can(Permission{"tasks", "delete"}) {
		t.Error("an unknown permission was granted")
	}
	if (&Principal{Role: "root"}).Can(TasksRead) {
		t.Error("an unknown role was granted a permission")
	}
	scoped := &Principal{Role: RoleAdmin, Namespace: "a"}
	if !scoped.Sees("a") || scoped.Sees("b") || !(&Principal{}).Sees("b") {
		t.Error("namespace visibility is wrong")
	}
	if _, err := ParseRole("superuser"); err == nil {
		t.Error("unknown role parsed")
	}
}

func pemOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWT(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	claims := func(extra map[string]any) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "svc-billing", "role": "operator", "exp": now.Add(time.Hour).Unix(), "iss": "idp", "aud": "tasker"}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	rs, err := NewJWTVerifier(JWTConfig{Algorithm: "RS256", PublicKeyPEM: pemOf(t, &rsaKey.PublicKey), Issuer: "idp", Audience: "tasker"})
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(tokens{}, rs, func() time.Time { return now })
	bearer := func(s string) string { return "Bearer " + s }

	p, err := a.Authenticate(context.Background(), bearer(sign(t, jwt.SigningMethodRS256, rsaKey, claims(map[string]any{"namespace": "payments"}))))
	if err != nil || p.ID != "jwt:svc-billing" || p.Role != RoleOperator || p.Namespace != "payments" {
		t.Fatalf("valid RS256 token: %+v, %v", p, err)
	}
	rejected := map[string]string{
		"ES256 while RS256 is pinned":         sign(t, jwt.SigningMethodES256, ecKey, claims(nil)),
		"HS256 with the public key as secret": sign(t, jwt.SigningMethodHS256, pemOf(t, &rsaKey.PublicKey), claims(nil)),
		"alg none":                            sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)),
		"another RSA key":                     sign(t, jwt.SigningMethodRS256, mustRSA(t), claims(nil)),
		"no exp":                              sign(t, jwt.SigningMethodRS256, rsaKey, claims(map[string]any{"exp": nil})),
		"wrong issuer":                        sign(t, jwt.SigningMethodRS256, rsaKey, claims(map[string]any{"iss": "evil"})),
		"wrong audience":                      sign(t, jwt.SigningMethodRS256, rsaKey, claims(map[string]any{"aud": "other"})),
		"no role":                             sign(t, jwt.SigningMethodRS256, rsaKey, claims(map[string]any{"role": nil})),
		"unknown role":                        sign(t, jwt.SigningMethodRS256, rsaKey, claims(map[string]any{"role": "root"})),
		"no subject":                          sign(t, jwt.SigningMethodRS256, rsaKey, claims(map[string]any{"sub": nil})),
		"not yet valid":                       sign(t, jwt.SigningMethodRS256, rsaKey, claims(map[string]any{"nbf": now.Add(time.Hour).Unix()})),
	}
	for name, tok := range rejected {
		if p, err := a.Authenticate(context.Background(), bearer(tok)); err == nil {
			t.Errorf("%s: accepted as %+v", name, p)
		}
	}
	if _, err := a.Authenticate(context.Background(), bearer(sign(t, jwt.SigningMethodRS256, rsaKey, claims(map[string]any{"exp": now.Add(-time.Hour).Unix()})))); !errors.Is(err, ErrExpired) {
		t.Errorf("expired JWT: err = %v, want ErrExpired", err)
	}
	// ES256 and EdDSA verifiers accept their own algorithm only.
	es, err := NewJWTVerifier(JWTConfig{Algorithm: "ES256", PublicKeyPEM: pemOf(t, &ecKey.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := es.Verify(sign(t, jwt.SigningMethodES256, ecKey, claims(nil)), now); err != nil {
		t.Errorf("ES256: %v", err)
	}
	ed, err := NewJWTVerifier(JWTConfig{Algorithm: "EdDSA", PublicKeyPEM: pemOf(t, edPub)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ed.Verify(sign(t, jwt.SigningMethodEdDSA, edPriv, claims(nil)), now); err != nil {
		t.Errorf("EdDSA: %v", err)
	}
	if _, err := ed.Verify(sign(t, jwt.SigningMethodES256, ecKey, claims(nil)), now); err == nil {
		t.Error("EdDSA verifier accepted ES256")
	}
	// Symmetric or unknown algorithms, and mismatched keys, are refused at setup.
	for _, cfg := range []JWTConfig{
		{Algorithm: "HS256", PublicKeyPEM: []byte("secret")},
		{Algorithm: "none"},
		{Algorithm: "RS256", PublicKeyPEM: pemOf(t, &ecKey.PublicKey)},
		{Algorithm: "ES256", PublicKeyPEM: []byte("not a key")},
	} {
		if _, err := NewJWTVerifier(cfg); err == nil {
			t.Errorf("NewJWTVerifier(%s) accepted", cfg.Algorithm)
		}
	}
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
