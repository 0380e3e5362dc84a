package main

import (
	"strings"
	"testing"

	"github.com/billtransfer/ledger/services/api"
)

// TestTokenCommands: token create prints the token alone on stdout (for
// TOKEN=$(billctl token create …)) after sending only its hash; the new token
// works at once; token list never shows a token; token revoke confirms.
func TestTokenCommands(t *testing.T) {
	t.Parallel()
	exec := &recordingExecutor{}
	url := newServer(t, api.Options{Executor: exec})
	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "token", "create", "--role", "ingest", "--name", "meter")
	token := strings.TrimSpace(stdout)
	if code != 0 || !strings.HasPrefix(token, "blt_") || strings.Count(stdout, "\n") != 1 || !strings.Contains(stderr, "shown only this once") {
		t.Fatalf("token create: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	calls := exec.calls()
	if len(calls) != 1 || calls[0].GetCreateToken().GetRole() != "ingest" || calls[0].GetCreateToken().GetName() != "meter" ||
		len(calls[0].GetCreateToken().GetTokenSha256()) != 64 || strings.Contains(calls[0].String(), token) {
		t.Fatalf("the command sent: %v", calls)
	}
	id := calls[0].GetCreateToken().GetTokenId()

	// The ingest token works on this server at once, within its role.
	if code, stdout, stderr := runCLI(t, "", "--server", url, "--token", token, "info"); code != 0 {
		t.Fatalf("info with the new token: exit %d %s %s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, "", "--server", url, "--token", token, "token", "list"); code != 1 || !strings.HasPrefix(stderr, "PERMISSION_DENIED: ListTokens is not allowed for the ingest role") {
		t.Fatalf("token list with an ingest token: exit %d %q", code, stderr)
	}

	code, stdout, _ = runCLI(t, "", "--server", url, "--token", testToken, "token", "list")
	if code != 0 || strings.Contains(stdout, token) || !strings.Contains(stdout, id) || !strings.Contains(stdout, "meter") || !strings.Contains(stdout, "file:admin") {
		t.Fatalf("token list: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr = runCLI(t, "", "--server", url, "--token", testToken, "token", "revoke", id, "--reason", "rotated")
	if code != 0 || !strings.HasPrefix(stdout, "revoked "+id+" at ") {
		t.Fatalf("token revoke: exit %d %q %q", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, "", "--server", url, "--token", token, "info"); code != 1 || !strings.HasPrefix(stderr, "UNAUTHENTICATED") {
		t.Fatalf("revoked token: exit %d %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, "", "--server", url, "--token", testToken, "token", "create", "--role", "root"); code != 2 || !strings.Contains(stderr, "--role") {
		t.Fatalf("bad role: exit %d %q", code, stderr)
	}
}
