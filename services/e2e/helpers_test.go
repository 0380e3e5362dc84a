package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Paths of the binaries TestMain builds.
var (
	billingdBin string
	billctlBin  string
)

// simulatedStart is the ledger clock every test starts from.
const simulatedStart = "2026-08-10T12:00:00Z"

// TestMain builds billingd and billctl once into a temporary directory. The
// binaries are plain builds (not race-instrumented) even under go test -race:
// the race detector then watches the test process only.
func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "billing-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := func() int {
		defer func() { _ = os.RemoveAll(dir) }()
		goBin := goTool()
		for name, pkg := range map[string]string{
			"billingd": "github.com/billtransfer/ledger/services/billingd",
			"billctl":  "github.com/billtransfer/ledger/services/billctl",
			"demo":     "github.com/billtransfer/ledger/services/demo",
		} {
			out := filepath.Join(dir, name)
			start := time.Now()
			cmd := exec.Command(goBin, "build", "-o", out, pkg)
			cmd.Env = cleanEnv()
			if b, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: go build %s: %v\n%s", pkg, err, b)
				return 1
			}
			if testing.Verbose() {
				fmt.Printf("e2e: built %s in %s\n", name, time.Since(start).Round(time.Millisecond))
			}
		}
		billingdBin = filepath.Join(dir, "billingd")
		billctlBin = filepath.Join(dir, "billctl")
		return m.Run()
	}()
	os.Exit(code)
}

// goTool is the go command of the toolchain running the tests, or the one on
// PATH.
func goTool() string {
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// cleanEnv is the environment of every subprocess: the test's own, without
// the BILLING_* variables that would silently change billingd's or billctl's
// flags (a BILLING_NATS_URL would, for instance, make billingd skip its
// embedded server).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BILLING_") {
			env = append(env, kv)
		}
	}
	return env
}

// freeAddr returns a loopback address with a port that was free a moment ago.
// Another process can take it before billingd binds it; startDaemon retries
// then.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// daemon is a billingd subprocess.
type daemon struct {
	t       *testing.T
	dataDir string
	cwd     string // billctl's working directory: empty, so no ./data/admin.token is picked up by accident
	http    string // host:port
	token   string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been reaped
	waitErr error         // set before exited is closed
}

// startCount numbers billingd starts, for log file names.
var (
	startMu    sync.Mutex
	startCount int
)

// startDaemon starts billingd on dataDir with a fresh HTTP port, a NATS port
// picked by the server, the simulated clock and a fast sweeper, and returns
// once GET /healthz answers 200. Its output goes to a log file next to the
// data dir, printed into the test log when the test fails. t.Cleanup stops
// it (SIGTERM, then SIGKILL). extra flags are added to billingd's command line.
func startDaemon(t *testing.T, dataDir string, extra ...string) *daemon {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		d, err := tryStartDaemon(t, dataDir, extra...)
		if err == nil {
			return d
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
		t.Logf("billingd could not bind its port (attempt %d), retrying: %v", attempt+1, err)
	}
	t.Fatalf("start billingd: %v", lastErr)
	return nil
}

func tryStartDaemon(t *testing.T, dataDir string, extra ...string) (*daemon, error) {
	startMu.Lock()
	startCount++
	n := startCount
	startMu.Unlock()
	d := &daemon{
		t:       t,
		dataDir: dataDir,
		cwd:     t.TempDir(),
		http:    freeAddr(t),
		logPath: fmt.Sprintf("%s-billingd-%d.log", strings.TrimRight(dataDir, "/"), n),
		exited:  make(chan struct{}),
	}
	logFile, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command(billingdBin,
		"--data-dir", dataDir,
		"--http", d.http,
		"--nats-listen", "127.0.0.1:0",
		"--simulated-clock", simulatedStart,
		"--sweep-interval", "100ms",
	)
	d.cmd.Args = append(d.cmd.Args, extra...)
	d.cmd.Env = cleanEnv()
	d.cmd.Stdout = logFile
	d.cmd.Stderr = logFile
	if err := d.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		_ = logFile.Close()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("billingd log %s:\n%s", d.logPath, tail(d.logPath, 64<<10))
		}
	})

	start := time.Now()
	deadline := start.Add(90 * time.Second) // a restart recovers the JetStream files first
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-d.exited:
			return nil, fmt.Errorf("billingd exited before it was ready (%v):\n%s", d.waitErr, tail(d.logPath, 16<<10))
		default:
		}
		res, err := client.Get("http://" + d.http + "/healthz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			d.kill()
			return nil, fmt.Errorf("billingd not healthy after %s (last: %v):\n%s", time.Since(start), err, tail(d.logPath, 16<<10))
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		return nil, fmt.Errorf("read admin token: %w", err)
	}
	d.token = strings.TrimSpace(string(tok))
	t.Logf("billingd #%d ready on %s in %s (data dir %s)", n, d.http, time.Since(start).Round(time.Millisecond), dataDir)
	return d, nil
}

// kill sends SIGKILL (kill -9) to billingd and waits until it is reaped. The
// embedded NATS server dies with it.
func (d *daemon) kill() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

// stop shuts billingd down gracefully (SIGTERM), or kills it after 15 s.
func (d *daemon) stop() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		d.t.Logf("billingd did not stop within 15 s of SIGTERM; killing it")
		d.kill()
	}
}

// tail returns the last max bytes of a file.
func tail(path string, max int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if int64(len(b)) > max {
		b = append([]byte("…\n"), b[int64(len(b))-max:]...)
	}
	return string(b)
}

// result is the outcome of one billctl run.
type result struct {
	args   []string
	stdout string
	stderr string
	code   int
	took   time.Duration
}

// String renders the run for failure messages.
func (r result) String() string {
	return fmt.Sprintf("billctl %s\nexit %d after %s\n--- stdout\n%s--- stderr\n%s", strings.Join(r.args, " "), r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// ctl runs billctl against the daemon with its admin token and -o json.
// stdin may be "". It fails the test when billctl cannot be run at all or
// takes more than 3 minutes; call it from the test goroutine only.
func (d *daemon) ctl(stdin string, args ...string) result {
	d.t.Helper()
	r, err := d.tryCtl(stdin, args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return r
}

// tryCtl is ctl that reports a failure to run billctl as an error instead of
// failing the test, for use from other goroutines.
func (d *daemon) tryCtl(stdin string, args ...string) (result, error) {
	full := append([]string{"--server", "http://" + d.http, "--token", d.token, "-o", "json"}, args...)
	return runBillctl(d.cwd, stdin, full...)
}

// ctlOK is ctl that fails the test unless billctl exits 0.
func (d *daemon) ctlOK(stdin string, args ...string) result {
	d.t.Helper()
	r := d.ctl(stdin, args...)
	if r.code != 0 {
		d.t.Fatalf("want exit 0:\n%s", r)
	}
	return r
}

// runBillctl runs the billctl binary in dir (bounded to 3 minutes). A
// non-zero exit status is a result, not an error.
func runBillctl(dir, stdin string, args ...string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, billctlBin, args...)
	cmd.Env = cleanEnv()
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	start := time.Now()
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return r, fmt.Errorf("billctl timed out:\n%s", r)
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		return r, fmt.Errorf("run billctl %v: %w", args, err)
	}
	return r, nil
}

// decode parses billctl's JSON output (one document) into v, failing the test
// with the whole run on error.
func decode(t *testing.T, r result, v any) {
	t.Helper()
	// Unknown fields are allowed: later issues add fields to these messages.
	if err := json.NewDecoder(strings.NewReader(r.stdout)).Decode(v); err != nil {
		t.Fatalf("decode the JSON output: %v\n%s", err, r)
	}
}

// decodeQuiet is decode that returns the error instead of failing the test
// (for polls that may race with a kill).
func decodeQuiet(r result, v any) error {
	return json.NewDecoder(strings.NewReader(r.stdout)).Decode(v)
}

// decodeLines parses JSON Lines output, one value per line.
func decodeLines[T any](t *testing.T, r result) []T {
	t.Helper()
	var out []T
	for i, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("decode output line %d: %v\n%s", i+1, err, r)
		}
		out = append(out, v)
	}
	return out
}

// writeFile writes content to a new file in a temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// u64 is a protojson 64-bit integer: a JSON string ("12") or, leniently, a
// number.
type u64 uint64

// UnmarshalJSON accepts "12" and 12.
func (n *u64) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an unsigned integer: %s", b)
	}
	*n = u64(v)
	return nil
}

// Output shapes of billctl -o json (proto field names, every field present).

// billable is `report billable -o json`.
type billable struct {
	Rows       []billableRow `json:"rows"`
	Total      string        `json:"total"`
	Checkpoint u64           `json:"checkpoint"`
}

type billableRow struct {
	Month           string `json:"month"`
	PayerAccountID  string `json:"payer_account_id"`
	SourceAccountID string `json:"source_account_id"`
	AccountID       string `json:"account_id"`
	Service         string `json:"service"`
	BilledCost      string `json:"billed_cost"`
	UsageQuantity   string `json:"usage_quantity"`
	RecordCount     u64    `json:"record_count"`
	Currency        string `json:"currency"`
}

// records sums record_count over the rows.
func (b billable) records() uint64 {
	var n uint64
	for _, r := range b.Rows {
		n += uint64(r.RecordCount)
	}
	return n
}

// sendSummary is `usage send -o json`.
type sendSummary struct {
	Records          int            `json:"records"`
	Accepted         int            `json:"accepted"`
	Duplicates       int            `json:"duplicates"`
	Rejected         int            `json:"rejected"`
	RejectedByReason map[string]int `json:"rejected_by_reason"`
	Rejections       []struct {
		Line         int    `json:"line"`
		UsageID      string `json:"usage_id"`
		Reason       string `json:"reason"`
		Message      string `json:"message"`
		DeadLetterID string `json:"dead_letter_id"`
	} `json:"rejections"`
}

// deadLetters is `deadletter list -o json`.
type deadLetters struct {
	DeadLetters []struct {
		DeadLetterID string `json:"dead_letter_id"`
		Reason       string `json:"reason"`
		Message      string `json:"message"`
		UsageID      string `json:"usage_id"`
		Payload      string `json:"payload"`
		Origin       string `json:"origin"`
		RecordedAt   string `json:"recorded_at"`
	} `json:"dead_letters"`
	ByReason map[string]int `json:"by_reason"`
}

// redrive is `deadletter redrive -o json`.
type redrive struct {
	Results []struct {
		UsageID      string `json:"usage_id"`
		Status       string `json:"status"`
		Reason       string `json:"reason"`
		Message      string `json:"message"`
		DeadLetterID string `json:"dead_letter_id"`
		Index        u64    `json:"index"`
	} `json:"results"`
	Resolved     int `json:"resolved"`
	StillFailing int `json:"still_failing"`
}

// replayOut is `replay -o json` (one line).
type replayOut struct {
	Month       string                     `json:"month"`
	AsOf        string                     `json:"as_of"`
	Events      uint64                     `json:"events"`
	Records     uint64                     `json:"records"`
	Seconds     float64                    `json:"seconds"`
	Replay      map[string]json.RawMessage `json:"replay"`
	Live        map[string]json.RawMessage `json:"live"`
	Verified    *bool                      `json:"verified"`
	Differences []string                   `json:"differences"`
}

// readModelDigest is one read model inside replayOut.Replay / Live.
type readModelDigest struct {
	Digest string            `json:"digest"`
	Rows   uint64            `json:"rows"`
	Totals map[string]string `json:"totals"`
}

// model returns the digest of read model name from a replay or live map.
func model(t *testing.T, m map[string]json.RawMessage, name string) readModelDigest {
	t.Helper()
	raw, ok := m[name]
	if !ok {
		t.Fatalf("no read model %q in %v", name, m)
	}
	var d readModelDigest
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("read model %q: %v (%s)", name, err, raw)
	}
	return d
}

// info is `info -o json`.
type info struct {
	NATSURL        string `json:"nats_url"`
	Now            string `json:"now"`
	SimulatedClock bool   `json:"simulated_clock"`
	LastPosition   u64    `json:"last_position"`
}

// natsURL asks the daemon for its NATS address (the embedded server picks a
// new port on every start).
func (d *daemon) natsURL() string {
	d.t.Helper()
	var in info
	decode(d.t, d.ctlOK("", "info"), &in)
	if in.NATSURL == "" {
		d.t.Fatalf("billingd advertises no NATS URL")
	}
	return in.NATSURL
}

// billable runs `report billable --month M -o json`.
func (d *daemon) billable(month string) billable {
	d.t.Helper()
	var b billable
	decode(d.t, d.ctlOK("", "report", "billable", "--month", month), &b)
	return b
}
