package e2e

import (
	"os/exec"
	"path/filepath"
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
	for _, cur := range []string{"USD", "EUR", "JPY"} {
		if !strings.Contains(s, "TOTAL") || !strings.Contains(s, "  "+cur+"  ") {
			t.Fatalf("demo output has no %s invoice:\n%s", cur, s)
		}
	}
}
