package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/projections"
	"github.com/billtransfer/ledger/readmodel"
)

// Projectors across processes (issue #8 item 1).
//
// With SQLite (a read model file per process) the projector role runs every
// projection in this process, as a single-process billingd always has. With
// PostgreSQL (a read model every process shares) projector processes share
// the projections through leases in JetStream KV (services/lease): each
// projection runs in exactly one of them at a time, and the query role reads
// the checkpoints the projectors commit in the read model instead of asking
// local runners.

// parts is what one billingd process runs, decided from its roles and from
// whether the read model is shared (PostgreSQL) or its own (SQLite).
type parts struct {
	// Commands: CommandService (Execute and token administration), the
	// shipped sellers of record and the month sealer (command role).
	Commands bool
	// Sweeper expires invitations (T3); it finds them in the transfers read
	// model, so it runs where one is maintained (command role, and a shared
	// read model or the projector role here).
	Sweeper bool
	// Ingest: NATS ingestion (usage.v1.>) and UsageService ingestion over
	// HTTP, through the usage writer (ingest role).
	Ingest bool
	// Projectors: none, every projection here, or a share by leases.
	Projectors projectorMode
	// Queries: QueryService and the read models' readers (query role).
	Queries bool
	// Waiter is what read-your-writes waits on.
	Waiter waiterMode
	// DeadLetters serves the dead letter (list with the query role, re-drive
	// with the ingest role) where the read model holding it is maintained.
	DeadLetters bool
	// Directory follows organizations and transfers for usage booking and
	// request authorization (every role but projector).
	Directory bool
	// Status is what /readyz and /metrics report on.
	Status statusMode
}

type projectorMode string

const (
	noProjectors     projectorMode = "none"
	localProjectors  projectorMode = "all five here"
	leasedProjectors projectorMode = "shared by leases"
)

type waiterMode string

const (
	noWaiter        waiterMode = "none"
	runnerWaiter    waiterMode = "local runners"
	readModelWaiter waiterMode = "read model checkpoints"
)

type statusMode string

const (
	noStatusMode        statusMode = "none"
	runnerStatusMode    statusMode = "projections running here"
	readModelStatusMode statusMode = "every checkpoint in the read model"
)

// planParts decides what a process runs. A query role without the projector
// role on SQLite is refused: nothing would ever write its read model.
func planParts(roles map[string]bool, shared bool) (parts, error) {
	if roles["query"] && !roles["projector"] && !shared {
		return parts{}, errors.New("the SQLite read model is a file of this process, which no other process's projectors write, so queries would never see anything; add the projector role (--role query,projector: a read replica with its own SQLite file) or share a PostgreSQL read model with the projector processes (--readmodel postgres://…)")
	}
	// maintained: some projector writes the read model this process reads.
	maintained := shared || roles["projector"]
	p := parts{
		Commands:    roles["command"],
		Sweeper:     roles["command"] && maintained,
		Ingest:      roles["ingest"],
		Projectors:  noProjectors,
		Queries:     roles["query"],
		Waiter:      noWaiter,
		DeadLetters: (roles["query"] || roles["ingest"]) && maintained,
		Directory:   roles["command"] || roles["ingest"] || roles["query"],
		Status:      noStatusMode,
	}
	switch {
	case roles["projector"] && shared:
		p.Projectors = leasedProjectors
	case roles["projector"]:
		p.Projectors = localProjectors
	}
	switch {
	case !p.Queries && !p.DeadLetters:
		// Nothing here waits for the read model.
	case shared:
		p.Waiter = readModelWaiter
	case roles["projector"]:
		p.Waiter = runnerWaiter
	}
	switch {
	case roles["query"] && shared:
		p.Status = readModelStatusMode
	case roles["projector"]:
		p.Status = runnerStatusMode
	}
	return p, nil
}

// projectionNames lists the projections in lease assignment order: the two
// that apply every usage event (by far the most work) first, so that two
// projector processes run one each (lease assigns names round-robin).
var projectionNames = []string{"usage", "proforma", "transfers", "invoices", "payments"}

// statusOrder is the order /readyz and /metrics list projections in.
var statusOrder = []string{"transfers", "usage", "proforma", "invoices", "payments"}

// newProjection returns the projection called name.
func newProjection(name string) projections.Projection {
	switch name {
	case "transfers":
		return projections.Transfers{}
	case "usage":
		return projections.Usage{}
	case "proforma":
		return projections.Proforma{}
	case "invoices":
		return projections.Invoices{}
	case "payments":
		return projections.Payments{}
	}
	panic("billingd: unknown projection " + name)
}

// kickSubject carries a store position (decimal) from a process whose query
// waits for the read model to the projector processes: their runners behind
// it move past the events outside their filter at once (Runner.Kick) rather
// than at their next idle tick. Core NATS, outside the BILLING stream's
// subjects: a lost kick only delays a query until that tick.
const kickSubject = "billingd.projector.kick"

// projectorSet is the projection runners of this process, by name. A Runner
// is single-use, so a projection run again (a lease taken again, a restart
// after ErrCheckpointMoved) gets a new one.
type projectorSet struct {
	db    *readmodel.DB
	store eventstore.Store
	log   *slog.Logger

	mu      sync.Mutex
	running map[string]*projections.Runner
}

func newProjectorSet(db *readmodel.DB, store eventstore.Store, log *slog.Logger) *projectorSet {
	return &projectorSet{db: db, store: store, log: log, running: map[string]*projections.Runner{}}
}

// runner makes name's runner and lists it as running here.
func (p *projectorSet) runner(name string) *projections.Runner {
	r := projections.NewRunner(p.db, p.store, newProjection(name), projections.RunnerConfig{Logger: p.log})
	p.mu.Lock()
	p.running[name] = r
	p.mu.Unlock()
	return r
}

// forget takes r off the list once it has stopped.
func (p *projectorSet) forget(name string, r *projections.Runner) {
	p.mu.Lock()
	if p.running[name] == r {
		delete(p.running, name)
	}
	p.mu.Unlock()
}

// get returns name's runner when it runs here.
func (p *projectorSet) get(name string) *projections.Runner {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running[name]
}

// runLeased is the lease.Work of a projection: it runs the projection while
// this process holds its lease. A runner that meets ErrCheckpointMoved (the
// previous holder committed one more batch after this process took the
// lease: it stops at its next renewal) starts again from the checkpoint; any
// other error (an *ApplyError, or store errors beyond RunnerConfig.MaxRestarts)
// is returned, and the lease manager logs it, releases the lease and refuses
// the projection here for a cooldown.
func (p *projectorSet) runLeased(ctx context.Context, name string) error {
	for {
		r := p.runner(name)
		err := r.Run(ctx)
		p.forget(name, r)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, readmodel.ErrCheckpointMoved) {
			return err
		}
		p.log.Warn("projection committed by another process: starting again from its checkpoint", "projection", name, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// kicked handles a kickSubject message: every runner here behind the
// position catches up at once.
func (p *projectorSet) kicked(msg *nats.Msg) {
	pos, err := strconv.ParseUint(string(msg.Data), 10, 64)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.running {
		if r.Checkpoint() < pos {
			r.Kick()
		}
	}
}

// status lists the projections running here with their runners' checkpoints.
func (p *projectorSet) status(context.Context) ([]projectorStatus, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []projectorStatus
	for _, name := range statusOrder {
		if r := p.running[name]; r != nil {
			out = append(out, projectorStatus{Name: name, Checkpoint: r.Checkpoint(), RunsHere: true})
		}
	}
	return out, nil
}

// projectorStatus is one projection's progress as /readyz and /metrics show it.
type projectorStatus struct {
	Name       string
	Checkpoint uint64
	// RunsHere is true when this process runs the projection.
	RunsHere bool
}

// statusSource lists the projections a process reports on.
type statusSource func(ctx context.Context) ([]projectorStatus, error)

// readModelStatus reports every projection's checkpoint as committed in the
// read model (what a query process reads), marking those that run here.
func readModelStatus(db *readmodel.DB, here *projectorSet) statusSource {
	return func(ctx context.Context) ([]projectorStatus, error) {
		out := make([]projectorStatus, 0, len(statusOrder))
		for _, name := range statusOrder {
			cp, err := db.Checkpoint(ctx, name)
			if err != nil {
				return nil, err
			}
			out = append(out, projectorStatus{Name: name, Checkpoint: cp, RunsHere: here != nil && here.get(name) != nil})
		}
		return out, nil
	}
}

// noStatus is the status of a process that neither runs nor reads projections.
func noStatus(context.Context) ([]projectorStatus, error) { return nil, nil }

// Bounds of readModelWaiter's polling.
const (
	waitPollMin   = 2 * time.Millisecond
	waitPollMax   = 25 * time.Millisecond
	waitKickEvery = 250 * time.Millisecond
)

// checkpointWaiter is read-your-writes when the projections run in other
// processes: it polls their checkpoints in the read model (where rows and
// checkpoint are committed together, so a checkpoint at the position means
// the rows are there) until each has reached the position, backing off from
// 2 to 25 ms, and kicks the projector processes so that runners with nothing
// to apply move their checkpoint at once. The API bounds the wait
// (api.Options.WaitTimeout), as it does for local runners.
type checkpointWaiter struct {
	db    *readmodel.DB
	nc    *nats.Conn
	names []string
}

// WaitFor implements api.Waiter.
func (w checkpointWaiter) WaitFor(ctx context.Context, position uint64) error {
	pending := slices.Clone(w.names)
	delay := waitPollMin
	var kicked time.Time
	for {
		left := pending[:0]
		for _, name := range pending {
			cp, err := w.db.Checkpoint(ctx, name)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("wait for projection %s: %w", name, err)
			}
			if cp < position {
				left = append(left, name)
			}
		}
		pending = left
		if len(pending) == 0 {
			return nil
		}
		if time.Since(kicked) >= waitKickEvery {
			_ = w.nc.Publish(kickSubject, []byte(strconv.FormatUint(position, 10)))
			kicked = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, waitPollMax)
	}
}
