package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/services/api"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/proto/billing/v1/billingv1connect"
)

// simulatedClock is billingd's clock: usage of 2026-08 and 2026-09 is in the past.
const simulatedClock = "2026-10-05T00:00:00Z"

// billingd is a billingd subprocess.
type billingd struct {
	cmd     *exec.Cmd
	dataDir string
	logPath string
	base    string // http://host:port
	token   string
	natsURL string
	exited  chan error
	js      natsjs.JetStream // for the store's last position
	jsConn  *nats.Conn

	command billingv1connect.CommandServiceClient
	query   billingv1connect.QueryServiceClient
	admin   billingv1connect.AdminServiceClient
}

// buildBillingd builds billingd into dir and returns its path.
func buildBillingd(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "billingd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/billtransfer/ledger/services/billingd")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build billingd: %w", err)
	}
	return bin, nil
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// startBillingd starts bin on a fresh data dir under dir and waits until it is ready.
func startBillingd(ctx context.Context, bin, dir string) (*billingd, error) {
	return startBillingdWith(ctx, bin, dir, "data", "billingd.log", "--nats-listen", "127.0.0.1:0")
}

// startBillingdWith starts bin with its data dir dir/name, its log in
// dir/logName, and args after the common ones (--data-dir, --http,
// --simulated-clock, --log-level warn), and waits until it is ready.
func startBillingdWith(ctx context.Context, bin, dir, name, logName string, args ...string) (*billingd, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	b := &billingd{dataDir: filepath.Join(dir, name), logPath: filepath.Join(dir, logName), base: "http://" + addr, exited: make(chan error, 1)}
	logf, err := os.Create(b.logPath)
	if err != nil {
		return nil, err
	}
	b.cmd = exec.Command(bin, append([]string{"--data-dir", b.dataDir, "--http", addr,
		"--simulated-clock", simulatedClock, "--log-level", "warn"}, args...)...)
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start billingd: %w", err)
	}
	go func() { b.exited <- b.cmd.Wait(); _ = logf.Close() }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-b.exited:
			b.exited <- err
			return nil, fmt.Errorf("billingd exited during start (%v); log:\n%s", err, b.logTail())
		default:
		}
		res, err := http.Get(b.base + "/healthz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b.stop()
			return nil, fmt.Errorf("billingd not healthy within 60s; log:\n%s", b.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(b.dataDir, "admin.token"))
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("admin token: %w", err)
	}
	b.token = strings.TrimSpace(string(tok))
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	opts := connect.WithInterceptors(bearer(b.token))
	b.command = billingv1connect.NewCommandServiceClient(hc, b.base, opts)
	b.query = billingv1connect.NewQueryServiceClient(hc, b.base, opts)
	b.admin = billingv1connect.NewAdminServiceClient(hc, b.base, opts)
	info, err := b.admin.GetServerInfo(ctx, connect.NewRequest(&billingv1.GetServerInfoRequest{}))
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("GetServerInfo: %w", err)
	}
	b.natsURL = info.Msg.GetNatsUrl()
	if b.natsURL == "" {
		b.stop()
		return nil, errors.New("billingd advertises no NATS URL")
	}
	return b, nil
}

func bearer(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}
}

// logTail is the end of billingd's log.
func (b *billingd) logTail() string {
	data, _ := os.ReadFile(b.logPath)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// stop sends SIGTERM, waits up to 15 s, then kills.
func (b *billingd) stop() {
	if b == nil || b.cmd == nil || b.cmd.Process == nil {
		return
	}
	if b.jsConn != nil {
		b.jsConn.Close()
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(15 * time.Second):
		logf("billingd did not stop within 15s after SIGTERM: killing it")
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
}

// register creates the organizations: accounts in groups of orgSize, the first
// of each group its management account.
func (b *billingd) register(ctx context.Context, accounts int) error {
	for k := 0; k*orgSize < accounts; k++ {
		first, end := k*orgSize, min((k+1)*orgSize, accounts)
		var members []string
		for i := first + 1; i < end; i++ {
			members = append(members, accountID(i))
		}
		req := &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_RegisterOrganization{RegisterOrganization: &billingv1.RegisterOrganization{
			ManagementAccountId: accountID(first), Name: fmt.Sprintf("Bench Org %d", k), MemberAccountIds: members,
		}}}
		if _, err := b.command.Execute(ctx, connect.NewRequest(req)); err != nil {
			return fmt.Errorf("register organization %d: %w", k, err)
		}
	}
	return nil
}

// monthRecords is a recordCounter: it reads the event store's last position
// (BILLING stream info) and asks QueryService.MonthDigest with that position
// as Billing-Min-Position, so billingd answers as soon as its read models have
// applied it (retrying while it answers Unavailable).
func (b *billingd) monthRecords(ctx context.Context, month string) (uint64, string, error) {
	if b.js == nil {
		nc, err := nats.Connect(b.natsURL, nats.Name("benchmark-settle"))
		if err != nil {
			return 0, "", err
		}
		b.jsConn = nc
		if b.js, err = natsjs.New(nc); err != nil {
			return 0, "", err
		}
	}
	st, err := b.js.Stream(ctx, jetstream.DefaultStreamName)
	if err != nil {
		return 0, "", err
	}
	last := st.CachedInfo().State.LastSeq
	for {
		req := connect.NewRequest(&billingv1.MonthDigestRequest{Month: month})
		req.Header().Set(api.MinPositionHeader, strconv.FormatUint(last, 10))
		res, err := b.query.MonthDigest(ctx, req)
		if connect.CodeOf(err) == connect.CodeUnavailable {
			continue // not there within billingd's wait timeout (5 s): ask again
		}
		if err != nil {
			return 0, "", err
		}
		return digestRecords(res.Msg)
	}
}

// digestRecords reads the billable digest's totals.
func digestRecords(d *billingv1.MonthDigestResponse) (uint64, string, error) {
	for _, dg := range d.GetDigests() {
		if dg.GetName() == "billable" {
			n, err := strconv.ParseUint(dg.GetTotals()["records"], 10, 64)
			if err != nil && dg.GetTotals()["records"] != "" {
				return 0, "", err
			}
			return n, dg.GetTotals()["billed_cost"], nil
		}
	}
	return 0, "", nil
}

// rss is a process's resident set figures in kB (and, for billingd, its Go
// heap from /metrics).
type rss struct {
	hwm, now            int64
	heapInuse, liveHeap float64 // MB
}

// readRSS reads VmHWM and VmRSS of pid ("self" for this process).
func readRSS(pid string) (rss, error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return rss{}, err
	}
	defer func() { _ = f.Close() }()
	var r rss
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmHWM":
			r.hwm = n
		case "VmRSS":
			r.now = n
		}
	}
	return r, sc.Err()
}

func mb(kb int64) float64 { return round(float64(kb)/1024, 1) }

func (b *billingd) rss() rss {
	r, err := readRSS(strconv.Itoa(b.cmd.Process.Pid))
	if err != nil {
		logf("read billingd RSS: %v", err)
	}
	r.heapInuse, r.liveHeap = b.goHeap()
	return r
}

// goHeap reads billingd's Go heap figures from GET /metrics (Prometheus Go
// collector): heap in use, and the live heap after the last GC, estimated as
// go_memstats_next_gc_bytes / 2 (the GC goal with GOGC=100).
func (b *billingd) goHeap() (inuseMB, liveMB float64) {
	req, err := http.NewRequest(http.MethodGet, b.base+"/metrics", nil)
	if err != nil {
		return 0, 0
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0
	}
	defer func() { _ = res.Body.Close() }()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes":
			inuseMB = round(x/(1<<20), 1)
		case "go_memstats_next_gc_bytes":
			liveMB = round(x/2/(1<<20), 1)
		}
	}
	return inuseMB, liveMB
}
