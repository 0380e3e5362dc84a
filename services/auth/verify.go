package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/billtransfer/ledger/domain"
)

// Sentinel rejections, both UNAUTHENTICATED. Compare with errors.Is.
var (
	// ErrMissingToken: the request carries no bearer token.
	ErrMissingToken = &domain.Error{Code: domain.CodeUnauthenticated,
		Message: `missing bearer token: send the header "Authorization: Bearer <token>" (the admin token is in DATA_DIR/admin.token)`}
	// ErrMalformedAuthorization: the Authorization header is not "Bearer <token>".
	ErrMalformedAuthorization = &domain.Error{Code: domain.CodeUnauthenticated,
		Message: `malformed Authorization header: want "Bearer <token>"`}
	// ErrInvalidToken: the token matches no stored token (unknown or revoked).
	ErrInvalidToken = &domain.Error{Code: domain.CodeUnauthenticated,
		Message: "invalid bearer token: it matches no token of this server (unknown or revoked)"}
)

// Verifier checks presented tokens against stored SHA-256 hashes. It is safe for
// concurrent use; Add makes a new token valid immediately.
type Verifier struct {
	mu      sync.RWMutex
	entries []verifierEntry
}

type verifierEntry struct {
	hash      [sha256.Size]byte
	principal Principal
}

// NewVerifier returns a verifier accepting the tokens whose records are given.
func NewVerifier(records ...TokenRecord) (*Verifier, error) {
	v := &Verifier{}
	for _, r := range records {
		if err := v.Add(r); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// LoadVerifier returns a verifier for the tokens stored in DATA_DIR/tokens.json.
// A missing file yields a verifier that accepts nothing.
func LoadVerifier(dataDir string) (*Verifier, error) {
	records, err := LoadTokens(dataDir)
	if err != nil {
		return nil, err
	}
	return NewVerifier(records...)
}

// Add accepts one more token. The record must carry a name, a role and a
// hex SHA-256 hash.
func (v *Verifier) Add(r TokenRecord) error {
	if r.Name == "" || r.Role == "" {
		return fmt.Errorf("token record %q: name and role are required", r.Name)
	}
	raw, err := hex.DecodeString(r.SHA256)
	if err != nil || len(raw) != sha256.Size {
		return fmt.Errorf("token record %q: sha256 must be %d hex characters", r.Name, 2*sha256.Size)
	}
	e := verifierEntry{principal: Principal{Name: r.Name, Role: r.Role, AccountID: r.AccountID}}
	copy(e.hash[:], raw)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.entries = append(v.entries, e)
	return nil
}

// Verify returns the principal of token. Every stored hash is compared, in
// constant time, whatever matches, so the time taken tells nothing about which
// token (if any) is close. Unknown tokens yield ErrInvalidToken, an empty one
// ErrMissingToken.
func (v *Verifier) Verify(token string) (Principal, error) {
	if token == "" {
		return Principal{}, ErrMissingToken
	}
	sum := sha256.Sum256([]byte(token))
	v.mu.RLock()
	defer v.mu.RUnlock()
	var found Principal
	matched := 0
	for i := range v.entries {
		eq := subtle.ConstantTimeCompare(sum[:], v.entries[i].hash[:])
		if eq == 1 && matched == 0 {
			found = v.entries[i].principal
		}
		matched |= eq
	}
	if matched == 0 {
		return Principal{}, ErrInvalidToken
	}
	return found, nil
}

// Authenticate parses an Authorization header value ("Bearer <token>", scheme
// case-insensitive) and verifies the token.
func (v *Verifier) Authenticate(authorization string) (Principal, error) {
	authorization = strings.TrimSpace(authorization)
	if authorization == "" {
		return Principal{}, ErrMissingToken
	}
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok && strings.EqualFold(scheme, "Bearer") {
		return Principal{}, ErrMissingToken
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, ErrMalformedAuthorization
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return Principal{}, ErrMissingToken
	}
	return v.Verify(token)
}
