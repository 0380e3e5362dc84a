package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// TestBillingd_PostgresReadModel: `--readmodel postgres://…` keeps the read
// models in PostgreSQL (migrated at start, no SQLite file under --data-dir),
// and a restart on the same database resumes from its checkpoints.
func TestBillingd_PostgresReadModel(t *testing.T) {
	target := readmodeltest.Postgres.Target(t) // skips without BILLING_TEST_POSTGRES
	dir := t.TempDir()
	pg := func(c *Config) { c.ReadModel = target }
	s, cancel := start(t, dir, pg)
	c := newClient(t, s, dir)
	for _, id := range []string{"111111111111", "222222222222"} {
		c.do(register(id))
	}
	c.do(inviteReq("rt-1", "111111111111", "222222222222", "2026-09"))
	c.do(acceptReq("rt-1"))
	if got := c.transfers(); got["rt-1"].GetStatus() != "ACCEPTED" {
		t.Fatalf("transfers %v", got)
	}
	stop(t, s, cancel)
	if _, err := os.Stat(filepath.Join(dir, "readmodel.db")); !os.IsNotExist(err) {
		t.Fatalf("a SQLite read model was created beside PostgreSQL: %v", err)
	}

	s, cancel = start(t, dir, pg)
	defer stop(t, s, cancel)
	c = newClient(t, s, dir)
	if got := c.transfers(); len(got) != 1 || got["rt-1"].GetStatus() != "ACCEPTED" {
		t.Fatalf("after restart: %v", got)
	}
}

// TestBillingd_ReadModelFlag: anything but sqlite or a postgres URL is refused.
func TestBillingd_ReadModelFlag(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:0", Store: "jetstream",
		ReadModel: "mysql://x", Role: "all", Replicas: 1, LogLevel: "warn"}
	_, err := Start(context.Background(), cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--readmodel") {
		t.Fatalf("Start = %v, want a --readmodel error", err)
	}
}
