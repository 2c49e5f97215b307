package auth

import (
	"crypto"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWTConfig configures JWT validation.
type JWTConfig struct {
	// Algorithm is the only signing algorithm accepted: RS256, RS384,
	// RS512, PS256, ES256, ES384, ES512 or EdDSA. Symmetric algorithms are
	// refused, and so is any token signed with another algorithm.
	Algorithm string
	// PublicKeyPEM is the PEM-encoded public key that verifies signatures.
	PublicKeyPEM []byte
	// Issuer and Audience, when set, must match the iss and aud claims.
	Issuer   string
	Audience string
}

// JWTVerifier validates JWTs. Tokens must carry exp, sub and a role claim
// (viewer, operator or admin); a namespace claim confines them.
type JWTVerifier struct {
	cfg    JWTConfig
	key    crypto.PublicKey
	method jwt.SigningMethod
}

// NewJWTVerifier parses the key and pins the algorithm.
func NewJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	method := jwt.GetSigningMethod(cfg.Algorithm)
	var key crypto.PublicKey
	var err error
	switch method.(type) {
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		key, err = jwt.ParseRSAPublicKeyFromPEM(cfg.PublicKeyPEM)
	case *jwt.SigningMethodECDSA:
		key, err = jwt.ParseECPublicKeyFromPEM(cfg.PublicKeyPEM)
	case *jwt.SigningMethodEd25519:
		key, err = jwt.ParseEdPublicKeyFromPEM(cfg.PublicKeyPEM)
	default:
		return nil, fmt.Errorf("jwt: algorithm %q is not an accepted asymmetric algorithm", cfg.Algorithm)
	}
	if err != nil {
		return nil, fmt.Errorf("jwt: public key for %s: %w", cfg.Algorithm, err)
	}
	return &JWTVerifier{cfg: cfg, key: key, method: method}, nil
}

type claims struct {
	jwt.RegisteredClaims
	Role      string `json:"role"`
	Namespace string `json:"namespace"`
}

// Verify checks a JWT at time now and returns its principal.
func (v *JWTVerifier) Verify(raw string, now time.Time) (*Principal, error) {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{v.method.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(30 * time.Second),
	}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	if v.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience))
	}
	var c claims
	_, err := jwt.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return v.key, nil }, opts...)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrExpired
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, ErrMalformed
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrUnknown, err)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: the JWT has no sub claim", ErrUnknown)
	}
	role, err := ParseRole(c.Role)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnknown, err)
	}
	return &Principal{ID: "jwt:" + c.Subject, Name: c.Subject, Role: role, Namespace: c.Namespace}, nil
}
