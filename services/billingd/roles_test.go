package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/eventstore/jetstream"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// roleSets lists every non-empty combination of the four roles.
func roleSets() []string {
	all := []string{"command", "ingest", "projector", "query"}
	var out []string
	for mask := 1; mask < 1<<len(all); mask++ {
		var rs []string
		for i, r := range all {
			if mask&(1<<i) != 0 {
				rs = append(rs, r)
			}
		}
		out = append(out, strings.Join(rs, ","))
	}
	return out
}

func mustRoles(t *testing.T, role string) map[string]bool {
	t.Helper()
	roles, err := Config{Role: role}.roles()
	if err != nil {
		t.Fatal(err)
	}
	return roles
}

// TestPlanParts (issue #8 item 1): what each role starts, on a process's own
// SQLite read model and on a shared PostgreSQL one. README "Roles" is this
// table.
func TestPlanParts(t *testing.T) {
	t.Parallel()
	none, local, leased := noProjectors, localProjectors, leasedProjectors
	for _, tc := range []struct {
		role   string
		shared bool
		want   parts
	}{
		{"all", false, parts{Commands: true, Sweeper: true, Ingest: true, Projectors: local, Queries: true, Waiter: runnerWaiter, DeadLetters: true, Directory: true, Status: runnerStatusMode}},
		{"all", true, parts{Commands: true, Sweeper: true, Ingest: true, Projectors: leased, Queries: true, Waiter: readModelWaiter, DeadLetters: true, Directory: true, Status: readModelStatusMode}},
		// The sweeper reads the transfers read model: not on a SQLite file no projector writes.
		{"command", false, parts{Commands: true, Projectors: none, Waiter: noWaiter, Directory: true, Status: noStatusMode}},
		{"command", true, parts{Commands: true, Sweeper: true, Projectors: none, Waiter: noWaiter, Directory: true, Status: noStatusMode}},
		{"ingest", false, parts{Ingest: true, Projectors: none, Waiter: noWaiter, Directory: true, Status: noStatusMode}},
		// Re-driving dead letters reads them from the shared read model.
		{"ingest", true, parts{Ingest: true, Projectors: none, Waiter: readModelWaiter, DeadLetters: true, Directory: true, Status: noStatusMode}},
		{"projector", false, parts{Projectors: local, Waiter: noWaiter, Status: runnerStatusMode}},
		{"projector", true, parts{Projectors: leased, Waiter: noWaiter, Status: runnerStatusMode}},
		{"query", true, parts{Projectors: none, Queries: true, Waiter: readModelWaiter, DeadLetters: true, Directory: true, Status: readModelStatusMode}},
		{"query,projector", false, parts{Projectors: local, Queries: true, Waiter: runnerWaiter, DeadLetters: true, Directory: true, Status: runnerStatusMode}},
		{"command,ingest", true, parts{Commands: true, Sweeper: true, Ingest: true, Projectors: none, Waiter: readModelWaiter, DeadLetters: true, Directory: true, Status: noStatusMode}},
	} {
		t.Run(fmt.Sprintf("%s/shared=%v", tc.role, tc.shared), func(t *testing.T) {
			got, err := planParts(mustRoles(t, tc.role), tc.shared)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	// Every combination: each role's own parts, and nothing of another's.
	for _, role := range roleSets() {
		roles := mustRoles(t, role)
		for _, shared := range []bool{false, true} {
			p, err := planParts(roles, shared)
			if roles["query"] && !roles["projector"] && !shared {
				if err == nil || !strings.Contains(err.Error(), "query,projector") || !strings.Contains(err.Error(), "postgres://") {
					t.Errorf("%s on SQLite: err %v, want a refusal naming the fixes", role, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s shared=%v: %v", role, shared, err)
			}
			if p.Commands != roles["command"] || p.Ingest != roles["ingest"] || p.Queries != roles["query"] ||
				(p.Projectors != noProjectors) != roles["projector"] || (p.Sweeper && !roles["command"]) ||
				p.Directory != (roles["command"] || roles["ingest"] || roles["query"]) ||
				(p.DeadLetters && !roles["query"] && !roles["ingest"]) ||
				(p.Projectors == leasedProjectors) != (roles["projector"] && shared) {
				t.Errorf("%s shared=%v: %+v", role, shared, p)
			}
		}
	}
}

// TestRolesServeWhatTheyShould starts billingd with every combination of
// roles on one NATS server and its own SQLite read model (and the single
// roles on a shared PostgreSQL one), and checks what it serves: commands
// with the command role, usage ingestion with the ingest role, queries with
// the query role, projectors (in /readyz) with the projector role; anything
// else answers Unimplemented. --role query alone on SQLite is refused.
func TestRolesServeWhatTheyShould(t *testing.T) {
	t.Parallel()
	emb, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	// check starts role and checks what it serves; it returns the process,
	// running, when keep is set. A projector runs all five projections, or
	// at least one when others share them (allFive false).
	check := func(t *testing.T, role, readModel string, allFive, keep bool) *splitProc {
		roles := mustRoles(t, role)
		p := startSplit(t, role, func(c *Config) { c.NATSURL, c.ReadModel, c.LogLevel = emb.ClientURL(), readModel, "warn" })
		if !keep {
			defer p.stop(t)
		}
		c := p.client(t)
		ctx := context.Background()
		served := func(what string, err error) {
			t.Helper()
			if unimpl := connect.CodeOf(err) == connect.CodeUnimplemented; unimpl == roles[what] {
				t.Errorf("--role %s: %s served = %v (err %v)", role, what, !unimpl, err)
			}
		}
		_, err := c.cmd.Execute(ctx, connect.NewRequest(register("999999999999")))
		served("command", err)
		_, err = c.usage.IngestBatch(ctx, connect.NewRequest(&billingv1.IngestBatchRequest{}))
		served("ingest", err)
		_, err = c.query.ListTransfers(ctx, connect.NewRequest(&billingv1.ListTransfersRequest{}))
		served("query", err)
		// Leases are taken in the background: give them a moment.
		var here []string
		ok := func() bool {
			here = p.runsHere(t)
			switch {
			case !roles["projector"]:
				return len(here) == 0
			case allFive:
				return len(here) == 5
			}
			return len(here) > 0
		}
		for deadline := time.Now().Add(5 * time.Second); !ok() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		if !ok() {
			t.Errorf("--role %s: runs projectors %v", role, here)
		}
		return p
	}
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		for _, role := range roleSets() {
			t.Run(role, func(t *testing.T) {
				t.Parallel()
				roles := mustRoles(t, role)
				if roles["query"] && !roles["projector"] {
					cfg := Config{DataDir: t.TempDir(), HTTP: "127.0.0.1:0", NATSURL: emb.ClientURL(), Store: "jetstream", ReadModel: "sqlite", Role: role, Replicas: 1, LogLevel: "warn"}
					_, err := Start(context.Background(), cfg, io.Discard)
					if err == nil || !strings.Contains(err.Error(), "--role query,projector") {
						t.Fatalf("Start = %v, want a refusal naming --role query,projector", err)
					}
					return
				}
				check(t, role, "sqlite", true, false)
			})
		}
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		target := readmodeltest.Postgres.Target(t)
		// A lone projector process takes all five leases; it keeps running,
		// so that the query processes' reads find their checkpoints moving.
		var projector *splitProc
		t.Run("projector", func(t *testing.T) { projector = check(t, "projector", target, true, true) })
		if projector != nil {
			defer projector.stop(t)
		}
		for _, role := range []string{"command", "ingest", "query", "all"} {
			t.Run(role, func(t *testing.T) { check(t, role, target, false, false) })
		}
	})
}
