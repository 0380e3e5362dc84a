package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// TestBillingd_ReadyzAndOperationalMetrics (issue #8 item 6): /readyz lists
// every projector with its lag and answers 200 once they caught up, 503 when a
// lag above --ready-max-lag is allowed none; /metrics has projector lag and
// command latency by outcome.
func TestBillingd_ReadyzAndOperationalMetrics(t *testing.T) {
	dir := t.TempDir()
	s, cancel := start(t, dir, func(c *Config) { c.ReadyMaxLag = 1000 })
	defer stop(t, s, cancel)
	c := newClient(t, s, dir)
	c.do(register("111111111111"))
	if _, err := c.cmd.Execute(context.Background(), connect.NewRequest(register("111111111111"))); err == nil {
		t.Fatal("registering twice succeeded")
	}
	// A query waits for the read models to catch up with the commands.
	if _, err := c.query.ListTransfers(context.Background(), connect.NewRequest(&billingv1.ListTransfersRequest{})); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get("http://" + s.HTTPAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Ready      bool `json:"ready"`
		Projectors []struct {
			Name string `json:"projection"`
			Lag  uint64 `json:"lag_positions"`
		} `json:"projectors"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !body.Ready || len(body.Projectors) != 5 || body.Projectors[0].Name != "transfers" {
		t.Fatalf("/readyz: %d %+v", res.StatusCode, body)
	}

	tok, _ := os.ReadFile(filepath.Join(dir, "admin.token"))
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.HTTPAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	mres, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(mres.Body)
	mres.Body.Close()
	for _, want := range []string{
		`billing_projector_lag_positions{projection="proforma"}`,
		`billing_projector_checkpoint{projection="transfers"}`,
		`billing_command_duration_seconds_count{command="RegisterOrganization",outcome="OK"} 1`,
		`billing_command_duration_seconds_count{command="RegisterOrganization",outcome="ALREADY_EXISTS"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
}

// TestReadyzUnreadyWhenAProjectorLags: a projector further behind than the
// limit makes /readyz answer 503 and name it.
func TestReadyzUnreadyWhenAProjectorLags(t *testing.T) {
	status := func(context.Context) ([]projectorStatus, error) {
		return []projectorStatus{{Name: "usage", Checkpoint: 10, RunsHere: true}, {Name: "proforma", Checkpoint: 99}}, nil
	}
	h := readyz(fixedLast{last: 100}, status, func() bool { return true }, 50)
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `{"projection":"usage","checkpoint":10,"lag_positions":90,"runs_here":true}`) {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
}

// fixedLast is a store whose last position is fixed (only LastPosition is used).
type fixedLast struct {
	eventstore.Store
	last uint64
}

func (f fixedLast) LastPosition(context.Context) (uint64, error) { return f.last, nil }
