package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDemo runs `make demo`'s program (services/demo) against the built
// binaries: the scenario loads, September is invoiced in USD, EUR and JPY, the
// partial payment leaves an invoice partially paid, and the cost table and the
// dashboard URL are printed.
func TestDemo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(filepath.Dir(billingdBin), "demo"), "--bin", filepath.Dir(billingdBin),
		"--data-dir", filepath.Join(dir, "demo-data"), "--http", freeAddr(t), "--exit")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{"tbg-rt-us", "tbg-rt-de", "tbg-rt-jp", "MARGIN", "PARTIALLY_PAID",
		"Amazon Web Services EMEA SARL", "Amazon Web Services Japan G.K.", "Dashboard: http://"} {
		if !strings.Contains(s, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, s)
		}
	}
	// The dashboard link signs in with a payer token, not the admin token.
	admin, err := os.ReadFile(filepath.Join(dir, "demo-data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`#token=(blt_[a-z0-9]+)`).FindStringSubmatch(s)
	if m == nil || m[1] == strings.TrimSpace(string(admin)) {
		t.Fatalf("the dashboard link carries no payer token (admin token %q):\n%s", strings.TrimSpace(string(admin)), s)
	}
	for _, cur := range []string{"USD", "EUR", "JPY"} {
		if !strings.Contains(s, "TOTAL") || !strings.Contains(s, "  "+cur+"  ") {
			t.Fatalf("demo output has no %s invoice:\n%s", cur, s)
		}
	}
}
