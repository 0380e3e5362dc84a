package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names under the data directory.
const (
	// TokensFile holds the token records (hashes only), mode 0600.
	TokensFile = "tokens.json"
	// AdminTokenFile holds the clear admin token for the operator, mode 0600.
	AdminTokenFile = "admin.token"
	// AdminName is the principal name of the admin token.
	AdminName = "admin"
	// TokenPrefix starts every token, so a leaked one is easy to recognize.
	TokenPrefix = "blt_"
)

// TokenRecord is one stored token: who it is, never the token itself.
type TokenRecord struct {
	// ID names the token in token list and revoke: the token id of a
	// TokenCreated event, or FileIDPrefix + Name for tokens.json (not written
	// to the file).
	ID string `json:"-"`
	// Name identifies the token's holder; it becomes the events' actor.
	Name string `json:"name"`
	// Role is one of the Role constants.
	Role string `json:"role"`
	// AccountID binds payer and source tokens to their account.
	AccountID string `json:"account_id,omitempty"`
	// SHA256 is the hex SHA-256 of the token.
	SHA256 string `json:"sha256"`
	// CreatedAt is when the token was issued (wall clock for tokens.json, the
	// ledger clock for token events), UTC.
	CreatedAt time.Time `json:"created_at"`
	// CreatedBy is the actor of TokenCreated ("" for tokens.json).
	CreatedBy string `json:"-"`
	// RevokedAt is when the token was revoked (zero while valid).
	RevokedAt time.Time `json:"-"`
	// RevokedReason is the reason given on revocation.
	RevokedReason string `json:"-"`
	// Origin is OriginLedger or OriginFile.
	Origin string `json:"-"`
}

// Revoked reports whether the token was revoked.
func (r TokenRecord) Revoked() bool { return !r.RevokedAt.IsZero() }

// Origins of a token record.
const (
	// OriginLedger: a TokenCreated event, valid on every process of the ledger.
	OriginLedger = "ledger"
	// OriginFile: DATA_DIR/tokens.json of this process.
	OriginFile = "file"
	// FileIDPrefix starts the id of a tokens.json record ("file:admin").
	FileIDPrefix = "file:"
)

// tokenFile is the layout of tokens.json.
type tokenFile struct {
	Version int           `json:"version"`
	Tokens  []TokenRecord `json:"tokens"`
}

const tokenFileVersion = 1

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewToken returns a fresh random token: TokenPrefix + 32 random bytes in
// lower-case base32.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return TokenPrefix + strings.ToLower(tokenEncoding.EncodeToString(b[:])), nil
}

// HashToken returns the hex SHA-256 of token, as stored in TokenRecord.SHA256.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// LoadTokens reads DATA_DIR/tokens.json; a missing file yields no records.
func LoadTokens(dataDir string) ([]TokenRecord, error) {
	path := filepath.Join(dataDir, TokensFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	var f tokenFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("read tokens: %s: %w", path, err)
	}
	if f.Version != tokenFileVersion {
		return nil, fmt.Errorf("read tokens: %s: unsupported version %d (want %d)", path, f.Version, tokenFileVersion)
	}
	return f.Tokens, nil
}

// SaveTokens replaces DATA_DIR/tokens.json with records, atomically (a
// temporary file renamed over the old one) and with mode 0600. The file is
// written by one process; concurrent writers must be serialized by the caller.
func SaveTokens(dataDir string, records []TokenRecord) error {
	if records == nil {
		records = []TokenRecord{}
	}
	b, err := json.MarshalIndent(tokenFile{Version: tokenFileVersion, Tokens: records}, "", "  ")
	if err != nil {
		return fmt.Errorf("save tokens: %w", err)
	}
	return writePrivate(filepath.Join(dataDir, TokensFile), append(b, '\n'))
}

// EnsureAdminToken makes sure the data directory holds an admin token. On the
// first start (no admin record in tokens.json) it generates one, writes the
// clear token to DATA_DIR/admin.token for the operator and its hash to
// DATA_DIR/tokens.json, both mode 0600, and returns it with created = true.
// Later starts find the stored hash and return "", false: the server never
// keeps the clear token, so it cannot print it again (the operator reads
// admin.token, or deletes tokens.json to issue a new admin token).
func EnsureAdminToken(dataDir string) (token string, created bool, err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	records, err := LoadTokens(dataDir)
	if err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	for _, r := range records {
		if r.Role == RoleAdmin {
			return "", false, nil
		}
	}
	token, err = NewToken()
	if err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	// The clear token is written first: a crash before tokens.json is saved
	// only means the next start issues (and writes) another token, whereas the
	// other order could store a hash whose token nobody can read.
	if err := writePrivate(filepath.Join(dataDir, AdminTokenFile), []byte(token+"\n")); err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	records = append(records, TokenRecord{
		Name:      AdminName,
		Role:      RoleAdmin,
		SHA256:    HashToken(token),
		CreatedAt: time.Now().UTC().Truncate(time.Second),
	})
	if err := SaveTokens(dataDir, records); err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	return token, true, nil
}

// writePrivate writes data to path with mode 0600 via a temporary file in the
// same directory, synced and renamed, so readers see the old or the new file.
func writePrivate(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	// CreateTemp already uses 0600; Chmod makes the mode independent of that detail.
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
