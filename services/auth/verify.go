package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

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

// Verifier checks presented tokens against stored SHA-256 hashes and keeps
// the list of tokens (valid and revoked). It is safe for concurrent use; Add,
// Put and Revoke take effect immediately.
type Verifier struct {
	mu      sync.RWMutex
	entries []verifierEntry
	byID    map[string]int // index into entries
}

type verifierEntry struct {
	hash   [sha256.Size]byte
	record TokenRecord
}

// NewVerifier returns a verifier accepting the tokens whose records are given
// (records without an ID are file records).
func NewVerifier(records ...TokenRecord) (*Verifier, error) {
	v := &Verifier{byID: map[string]int{}}
	for _, r := range records {
		if err := v.Add(r); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// LoadVerifier returns a verifier for the tokens stored in DATA_DIR/tokens.json.
// A missing file yields a verifier that accepts nothing (until Follow adds the
// ledger's tokens).
func LoadVerifier(dataDir string) (*Verifier, error) {
	records, err := LoadTokens(dataDir)
	if err != nil {
		return nil, err
	}
	return NewVerifier(records...)
}

// Add accepts one more token. The record must carry a name, a role and a hex
// SHA-256 hash; without an ID it is a file record, named FileIDPrefix + Name.
func (v *Verifier) Add(r TokenRecord) error {
	if r.ID == "" {
		r.ID, r.Origin = FileIDPrefix+r.Name, OriginFile
	}
	return v.Put(r)
}

// Put adds or replaces the token with r.ID. A revoked token stays revoked
// whatever r says: revocation is for ever, and a replayed TokenCreated must
// not bring a token back.
func (v *Verifier) Put(r TokenRecord) error {
	if r.ID == "" || r.Name == "" || r.Role == "" {
		return fmt.Errorf("token record %q: id, name and role are required", r.Name)
	}
	raw, err := hex.DecodeString(r.SHA256)
	if err != nil || len(raw) != sha256.Size {
		return fmt.Errorf("token record %q: sha256 must be %d hex characters", r.Name, 2*sha256.Size)
	}
	e := verifierEntry{record: r}
	copy(e.hash[:], raw)
	v.mu.Lock()
	defer v.mu.Unlock()
	if i, ok := v.byID[r.ID]; ok {
		if old := v.entries[i].record; old.Revoked() && !r.Revoked() {
			e.record.RevokedAt, e.record.RevokedReason = old.RevokedAt, old.RevokedReason
		}
		v.entries[i] = e
		return nil
	}
	v.byID[r.ID] = len(v.entries)
	v.entries = append(v.entries, e)
	return nil
}

// Revoke makes the token with this id invalid from now on; it reports whether
// the id was known. Revoking twice keeps the first time and reason.
func (v *Verifier) Revoke(id string, at time.Time, reason string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	i, ok := v.byID[id]
	if !ok {
		return false
	}
	if !v.entries[i].record.Revoked() {
		v.entries[i].record.RevokedAt, v.entries[i].record.RevokedReason = at.UTC(), reason
	}
	return true
}

// Lookup returns the record of a token id.
func (v *Verifier) Lookup(id string) (TokenRecord, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	i, ok := v.byID[id]
	if !ok {
		return TokenRecord{}, false
	}
	return v.entries[i].record, true
}

// Tokens lists the token records (never the tokens) ordered by creation time
// then id; revoked ones only when includeRevoked.
func (v *Verifier) Tokens(includeRevoked bool) []TokenRecord {
	v.mu.RLock()
	out := make([]TokenRecord, 0, len(v.entries))
	for _, e := range v.entries {
		if includeRevoked || !e.record.Revoked() {
			out = append(out, e.record)
		}
	}
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b TokenRecord) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Verify returns the principal of token. Every stored hash is compared, in
// constant time, whatever matches, so the time taken tells nothing about which
// token (if any) is close. Unknown and revoked tokens yield ErrInvalidToken,
// an empty one ErrMissingToken.
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
		if v.entries[i].record.Revoked() {
			eq = 0
		}
		if eq == 1 && matched == 0 {
			r := v.entries[i].record
			found = Principal{Name: r.Name, Role: r.Role, AccountID: r.AccountID}
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
