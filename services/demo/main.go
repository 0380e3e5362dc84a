// Command demo starts billingd with a simulated clock in a fresh data
// directory, loads the channel-partner scenario of issue #7 (package scenario)
// through billctl, and prints the billable / pro forma / margin table per
// organization (billctl report cost) and the dashboard URL with a payer token.
// `make demo` builds the binaries and runs it; Ctrl-C stops billingd.
package main

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/billtransfer/ledger/services/demo/scenario"
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
		"--simulated-clock", scenario.Start)
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
	for _, s := range scenario.Steps() {
		fmt.Printf("· %s\n", s.What)
		if _, err := ctl(s.Stdin, append([]string{"-o", "json"}, s.Args...)...); err != nil {
			return err
		}
	}
	for _, month := range []string{"2026-09", "2026-10"} {
		out, err := ctl("", "-o", "table", "report", "cost", "--month", month, "--payer", scenario.Partner)
		if err != nil {
			return err
		}
		fmt.Printf("\nBillable (what the partner pays) vs pro forma (what it charges) and margin, %s, per organization's billing group:\n\n%s", month, out)
	}
	out, err := ctl("", "-o", "table", "report", "invoices", "--month", scenario.ClosedMonth, "--payer", scenario.Partner)
	if err != nil {
		return err
	}
	fmt.Printf("\nInvoices of September:\n\n%s", out)
	out, err = ctl("", "-o", "json", "token", "create", "--role", "payer", "--account", scenario.Partner, "--name", "demo-partner")
	if err != nil {
		return err
	}
	var created struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Token == "" {
		return fmt.Errorf("billctl token create printed no token (%v):\n%s", err, out)
	}
	payerToken := created.Token
	// The token travels in the URL fragment, which the browser never sends to
	// the server; the page moves it into sessionStorage and off the address bar.
	fmt.Printf("\nDashboard: %s/#token=%s&month=%s  (signed in as the partner, a payer)\n", server, payerToken, scenario.ClosedMonth)
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
