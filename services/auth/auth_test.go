package auth

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/billtransfer/ledger/domain"
)

func TestEnsureAdminTokenFirstStartStoresOnlyTheHash(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data") // created by EnsureAdminToken
	token, created, err := EnsureAdminToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !created || !strings.HasPrefix(token, TokenPrefix) || len(token) < 40 {
		t.Fatalf("EnsureAdminToken = %q, %v; want a new %s… token", token, created, TokenPrefix)
	}

	tokens, err := os.ReadFile(filepath.Join(dir, TokensFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(tokens), token) || strings.Contains(string(tokens), strings.TrimPrefix(token, TokenPrefix)) {
		t.Fatalf("%s holds the clear token:\n%s", TokensFile, tokens)
	}
	if !strings.Contains(string(tokens), HashToken(token)) {
		t.Fatalf("%s lacks the token's SHA-256:\n%s", TokensFile, tokens)
	}
	var f tokenFile
	if err := json.Unmarshal(tokens, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Tokens) != 1 || f.Tokens[0].Role != RoleAdmin || f.Tokens[0].Name != AdminName {
		t.Fatalf("records = %+v, want one admin record", f.Tokens)
	}

	clear, err := os.ReadFile(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(clear)) != token {
		t.Fatalf("%s = %q, want the token", AdminTokenFile, clear)
	}

	if runtime.GOOS != "windows" {
		for _, name := range []string{TokensFile, AdminTokenFile} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if mode := fi.Mode().Perm(); mode != 0o600 {
				t.Errorf("%s mode = %o, want 600", name, mode)
			}
		}
	}
}

func TestEnsureAdminTokenSecondStartReloadsHash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token, _, err := EnsureAdminToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, created, err := EnsureAdminToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if created || again != "" {
		t.Fatalf("second start = %q, %v; want \"\", false", again, created)
	}
	records, err := LoadTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 1 {
		t.Fatalf("second start left %d records, want 1", len(records))
	}
	v, err := LoadVerifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(token)
	if err != nil {
		t.Fatalf("first-start token rejected after reload: %v", err)
	}
	if p != (Principal{Name: AdminName, Role: RoleAdmin}) {
		t.Fatalf("principal = %+v", p)
	}
}

func TestLoadTokensRejectsCorruptFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, TokensFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureAdminToken(dir); err == nil {
		t.Fatal("EnsureAdminToken accepted a corrupt tokens.json (it would silently issue a new admin)")
	}
}

func TestVerifier(t *testing.T) {
	t.Parallel()
	admin, payer := "blt_admin-secret", "blt_payer-secret"
	v, err := NewVerifier(
		TokenRecord{Name: "admin", Role: RoleAdmin, SHA256: HashToken(admin)},
		TokenRecord{Name: "partner", Role: RolePayer, AccountID: "111111111111", SHA256: HashToken(payer)},
	)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		header string
		want   Principal
		err    error
	}{
		{"admin", "Bearer " + admin, Principal{Name: "admin", Role: RoleAdmin}, nil},
		{"scheme case-insensitive", "bearer " + admin, Principal{Name: "admin", Role: RoleAdmin}, nil},
		{"second token", "Bearer " + payer, Principal{Name: "partner", Role: RolePayer, AccountID: "111111111111"}, nil},
		{"missing", "", Principal{}, ErrMissingToken},
		{"empty token", "Bearer ", Principal{}, ErrMissingToken},
		{"basic scheme", "Basic YWRtaW46eA==", Principal{}, ErrMalformedAuthorization},
		{"no scheme", admin, Principal{}, ErrMalformedAuthorization},
		{"wrong token", "Bearer blt_nope", Principal{}, ErrInvalidToken},
		{"prefix of a token", "Bearer " + admin[:len(admin)-1], Principal{}, ErrInvalidToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := v.Authenticate(tc.header)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("Authenticate(%q) error = %v, want %v", tc.header, err, tc.err)
			}
			if err != nil && domain.CodeOf(err) != domain.CodeUnauthenticated {
				t.Fatalf("code = %q, want UNAUTHENTICATED", domain.CodeOf(err))
			}
			if got != tc.want {
				t.Fatalf("principal = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestVerifierAddRejectsBadRecord(t *testing.T) {
	t.Parallel()
	v, _ := NewVerifier()
	for _, r := range []TokenRecord{
		{Name: "x", Role: RoleAdmin, SHA256: "abc"},
		{Name: "", Role: RoleAdmin, SHA256: HashToken("t")},
		{Name: "x", Role: "", SHA256: HashToken("t")},
	} {
		if err := v.Add(r); err == nil {
			t.Errorf("Add(%+v) accepted a bad record", r)
		}
	}
	if _, err := v.Verify("t"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("empty verifier accepted a token: %v", err)
	}
}

func TestNewTokenIsRandom(t *testing.T) {
	t.Parallel()
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if a == b || !strings.HasPrefix(a, TokenPrefix) || len(a) != len(TokenPrefix)+52 {
		t.Fatalf("NewToken = %q, %q", a, b)
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("FromContext found a principal in an empty context")
	}
	p := Principal{Name: "admin", Role: RoleAdmin}
	got, ok := FromContext(NewContext(context.Background(), p))
	if !ok || got != p {
		t.Fatalf("FromContext = %+v, %v", got, ok)
	}
}
