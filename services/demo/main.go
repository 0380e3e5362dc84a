// Command demo starts billingd with a simulated clock in a fresh data
// directory, loads the channel-partner scenario of issue #7 (scenario.go)
// through billctl, and prints the billable / pro forma / margin table per
// organization (billctl report cost) and the dashboard URL with a payer token.
// `make demo` builds the binaries and runs it; Ctrl-C stops billingd.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding billingd and billctl")
	dataDir := flag.String("data-dir", "demo-data", "data directory (deleted and created afresh)")
	addr := flag.String("http", "127.0.0.1:8080", "HTTP address of billingd")
	exit := flag.Bool("exit", false, "stop billingd once the scenario is loaded (for tests)")
	flag.Parse()
	if err := run(*bin, *dataDir, *addr, *exit); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(bin, dataDir, addr string, exitAfter bool) error {
	billingd, err := filepath.Abs(filepath.Join(bin, "billingd"))
	if err != nil {
		return err
	}
	billctl, _ := filepath.Abs(filepath.Join(bin, "billctl"))
	if err := os.RemoveAll(dataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dataDir, "billingd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	d := exec.Command(billingd, "--data-dir", dataDir, "--http", addr, "--nats-listen", "127.0.0.1:0",
		"--simulated-clock", "2026-08-10T00:00:00Z")
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		return fmt.Errorf("start billingd: %w", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = d.Process.Signal(syscall.SIGTERM)
			_ = d.Wait()
		}
	}
	defer stop()
	server := "http://" + addr
	if err := waitHealthy(server, 30*time.Second); err != nil {
		return fmt.Errorf("%w (log: %s)", err, logf.Name())
	}
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		return err
	}
	ctl := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(billctl, append([]string{"--server", server, "--token", strings.TrimSpace(string(token))}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return out.String(), fmt.Errorf("billctl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
		}
		return out.String(), nil
	}
	steps := []struct {
		what  string
		stdin string
		args  []string
	}{
		{"organizations, transfers (a two-level chain), pricing, fees, tax, FX", setup, []string{"-o", "json", "apply", "-f", "-"}},
		{"clock to the end of September", "", []string{"clock", "set", "2026-09-29T00:00:00Z"}},
		{"September usage", usageOf("2026-09"), []string{"-o", "json", "usage", "send", "-f", "-"}},
		{"clock to October 1st", "", []string{"clock", "set", "2026-10-01T06:00:00Z"}},
		{"close September: invoices in USD, EUR and JPY", "", []string{"close", "--payer", partner, "--month", "2026-09"}},
		{"clock to the end of October", "", []string{"clock", "set", "2026-10-29T00:00:00Z"}},
		{"October usage", usageOf("2026-10"), []string{"-o", "json", "usage", "send", "-f", "-"}},
		{"a partial payment of the USD invoice", `{"command":"RecordPayment","payment_id":"pay-2026-10-15","payer_account_id":"100000000001","amount":"500.00","currency":"USD","method":"CARD"}` + "\n", []string{"-o", "json", "apply", "-f", "-"}},
	}
	for _, s := range steps {
		fmt.Printf("· %s\n", s.what)
		if _, err := ctl(s.stdin, s.args...); err != nil {
			return err
		}
	}
	for _, month := range []string{"2026-09", "2026-10"} {
		out, err := ctl("", "-o", "table", "report", "cost", "--month", month, "--payer", partner)
		if err != nil {
			return err
		}
		fmt.Printf("\nBillable (what the partner pays) vs pro forma (what it charges) and margin, %s, per organization's billing group:\n\n%s", month, out)
	}
	out, err := ctl("", "-o", "table", "report", "invoices", "--month", "2026-09", "--payer", partner)
	if err != nil {
		return err
	}
	fmt.Printf("\nInvoices of September:\n\n%s", out)
	payerToken := strings.TrimSpace(string(token))
	if out, err := ctl("", "-o", "json", "token", "create", "--role", "payer", "--account", partner, "--name", "demo-partner"); err == nil {
		if t := jsonField(out, "token"); t != "" {
			payerToken = t
		}
	}
	fmt.Printf("\nDashboard: %s/  (sign in with the partner's token: %s)\n", server, payerToken)
	fmt.Printf("billctl:   bin/billctl --server %s --token %s report cost --month 2026-09\n", server, payerToken)
	if exitAfter {
		return nil
	}
	fmt.Println("\nbillingd keeps running; Ctrl-C stops it.")
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Wait() }()
	select {
	case <-ctx.Done():
		stop()
	case err := <-done:
		stopped = true
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("billingd stopped: %w", err)
		}
	}
	return nil
}

// waitHealthy polls /healthz until it answers 200.
func waitHealthy(server string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		res, err := http.Get(server + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("billingd did not become healthy within %s", limit)
}

// jsonField extracts a top-level string field from one JSON object without a schema.
func jsonField(s, name string) string {
	key := `"` + name + `":"`
	i := strings.Index(s, key)
	if i < 0 {
		return ""
	}
	rest := s[i+len(key):]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return rest[:j]
}
