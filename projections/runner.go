package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/readmodel"
)

// Defaults of RunnerConfig.
const (
	DefaultBatchSize    = 256
	DefaultIdleInterval = time.Second
	DefaultLinger       = 20 * time.Millisecond
)

// RunnerConfig tunes a Runner; the zero value uses the defaults.
type RunnerConfig struct {
	// BatchSize is the largest number of events applied in one transaction
	// (default DefaultBatchSize). The runner never waits to fill a batch: it takes
	// what has arrived, so latency stays low and throughput grows with load.
	BatchSize int
	// IdleInterval is how often an otherwise idle runner moves its checkpoint past
	// events outside its filter (default DefaultIdleInterval). WaitFor does it at
	// once, whatever this is.
	IdleInterval time.Duration
	// Linger is how long a runner that has records waits for more before it
	// commits a batch smaller than BatchSize (default DefaultLinger; negative =
	// never wait). Under load, bigger transactions write each touched row once
	// for many records; idle, a record waits at most Linger longer.
	Linger time.Duration
	// Logger receives the error that stops the runner (default slog.Default()).
	Logger *slog.Logger
	// MaxRestarts bounds how often Run starts again after a store or database
	// error (not after an *ApplyError, which a restart would only repeat, nor
	// after readmodel.ErrCheckpointMoved: another runner owns the tables);
	// 0 = DefaultMaxRestarts, negative = never restart.
	MaxRestarts int
}

// DefaultMaxRestarts is RunnerConfig.MaxRestarts when unset: about ten
// minutes of retries at the 5 s cap, then the runner reports its error.
const DefaultMaxRestarts = 120

func (c RunnerConfig) maxRestarts() int {
	switch {
	case c.MaxRestarts < 0:
		return 0
	case c.MaxRestarts == 0:
		return DefaultMaxRestarts
	}
	return c.MaxRestarts
}

// ErrRunnerStopped is returned by WaitFor when the runner has stopped before
// reaching the position; it wraps the error Run returned.
var ErrRunnerStopped = errors.New("projections: runner stopped")

// ApplyError reports the event a projection failed to apply. Run returns it (and
// logs it); nothing of the batch that held the event is committed.
type ApplyError struct {
	// Projection is the projection's name.
	Projection string
	// Position is the event's store position.
	Position uint64
	// Stream is the event's stream.
	Stream string
	// EventID is the event's id.
	EventID string
	// Err is the projection's error.
	Err error
}

// Error implements error.
func (e *ApplyError) Error() string {
	return fmt.Sprintf("projections: %s: apply event %s (stream %s, position %d): %v",
		e.Projection, e.EventID, e.Stream, e.Position, e.Err)
}

// Unwrap returns the projection's error.
func (e *ApplyError) Unwrap() error { return e.Err }

// Runner keeps one projection's tables up to date with the event store.
//
// Run loads the checkpoint, subscribes to the store from it and applies what
// arrives in batches; each batch's rows and the new checkpoint are committed in
// one transaction. Because the subscription is filtered, the checkpoint would
// otherwise stop at the projection's last event; when idle or asked to by WaitFor,
// the runner reads the store's last position, reads (with the filter) whatever it
// has not applied up to there, and moves the checkpoint to that position. So the
// checkpoint reaches every position in the store, including the positions of
// events other projections care about.
//
// A Runner is used once: Run it in a goroutine, cancel its context to stop it,
// and make a new Runner (on the same database) to resume.
type Runner struct {
	db    *readmodel.DB
	store eventstore.Store
	proj  Projection
	name  string
	cfg   RunnerConfig
	log   *slog.Logger

	started atomic.Bool
	kick    chan struct{} // a WaitFor wants the checkpoint moved past filtered-out events

	mu      sync.Mutex
	cp      uint64        // last committed checkpoint (guarded by mu)
	changed chan struct{} // closed and replaced whenever cp moves (guarded by mu)
	done    chan struct{} // closed when Run returns
	runErr  error         // Run's result, set before done is closed
}

// NewRunner returns a runner that applies the events of store to p's tables in db.
//
// A projection that keeps state across transactions (the usage and proforma
// projections cache the rows they have committed) gets a fresh instance for
// each Runner, so a Runner starts from what the database holds.
func NewRunner(db *readmodel.DB, store eventstore.Store, p Projection, cfg RunnerConfig) *Runner {
	if rl, ok := p.(runnerLocal); ok {
		p = rl.forRunner()
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.IdleInterval <= 0 {
		cfg.IdleInterval = DefaultIdleInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Runner{
		db:      db,
		store:   store,
		proj:    p,
		name:    p.Name(),
		cfg:     cfg,
		log:     log.With("projection", p.Name()),
		kick:    make(chan struct{}, 1),
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Name is the projection's name.
func (r *Runner) Name() string { return r.name }

// Checkpoint is the store position the projection's tables reflect, as last
// committed by this runner (0 before Run has loaded it).
func (r *Runner) Checkpoint() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cp
}

// WaitFor blocks until the checkpoint is at least position, so that a client
// that has just appended an event (and got its position) reads its own write. It
// returns ctx.Err() when ctx ends first, and an error wrapping ErrRunnerStopped
// (and Run's error) when the runner stops first.
func (r *Runner) WaitFor(ctx context.Context, position uint64) error {
	for {
		r.mu.Lock()
		cp, changed := r.cp, r.changed
		r.mu.Unlock()
		if cp >= position {
			return nil
		}
		select {
		case <-r.done:
			return fmt.Errorf("%w at position %d before reaching %d: %w", ErrRunnerStopped, cp, position, r.runErr)
		default:
		}
		// Ask the runner to move past events outside its filter; coalesced.
		r.Kick()
		select {
		case <-changed:
		case <-r.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Kick asks the runner to move its checkpoint past the events outside its
// filter now, rather than at its next idle tick, as WaitFor does before it
// waits. It never blocks. A process whose queries wait on the checkpoints in
// the read model (the runner runs in another process) has it called through
// NATS, so read-your-writes does not wait for RunnerConfig.IdleInterval.
func (r *Runner) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run applies events until ctx ends (returning ctx.Err()) or something fails. A
// projection error stops it: the error is logged and returned as *ApplyError, and
// the failing event's batch is not committed, so a restarted runner meets the same
// event again rather than skipping it.
func (r *Runner) Run(ctx context.Context) (err error) {
	if !r.started.CompareAndSwap(false, true) {
		return fmt.Errorf("projections: runner %s: Run called twice", r.name)
	}
	defer func() {
		if err != nil && ctx.Err() == nil {
			r.log.Error("projection runner stopped", "checkpoint", r.Checkpoint(), "err", err)
		}
		r.runErr = err
		close(r.done)
	}()

	for attempt := 0; ; attempt++ {
		err = r.runOnce(ctx)
		var ae *ApplyError
		if err == nil || ctx.Err() != nil || errors.As(err, &ae) || errors.Is(err, readmodel.ErrCheckpointMoved) || attempt >= r.cfg.maxRestarts() {
			return err
		}
		// A store or database error (a leader election, a lost connection):
		// start again from the committed checkpoint. The in-memory caches only
		// hold committed state, so nothing is applied twice or skipped.
		wait := min(time.Duration(attempt+1)*200*time.Millisecond, 5*time.Second)
		r.log.Warn("projection runner restarting after an error", "checkpoint", r.Checkpoint(), "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// runOnce follows the store from the committed checkpoint until ctx ends or
// an error occurs.
func (r *Runner) runOnce(ctx context.Context) error {
	cp, err := r.db.Checkpoint(ctx, r.name)
	if err != nil {
		return err
	}
	r.publish(cp)

	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	recs := make(chan eventstore.Record, r.cfg.BatchSize)
	subDone := make(chan error, 1)
	go func() {
		subDone <- r.store.Subscribe(subCtx, cp, r.proj.Filter(), func(rec eventstore.Record) error {
			select {
			case recs <- rec:
				return nil
			case <-subCtx.Done():
				return subCtx.Err()
			}
		})
	}()
	subRunning := true
	defer func() {
		if subRunning {
			cancel()
			<-subDone
		}
	}()

	ticker := time.NewTicker(r.cfg.IdleInterval)
	defer ticker.Stop()
	busy := false   // records arrived since the last tick
	kicked := false // a WaitFor asked for a catch-up while records were waiting
	batch := make([]eventstore.Record, 0, r.cfg.BatchSize)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()

		case rec := <-recs:
			busy = true
			batch = append(batch[:0], rec)
		fill:
			for len(batch) < r.cfg.BatchSize {
				select {
				case rec := <-recs:
					batch = append(batch, rec)
				default:
					break fill
				}
			}
			if len(batch) < r.cfg.BatchSize && r.cfg.Linger > 0 {
				linger := time.NewTimer(r.cfg.Linger)
			wait:
				for len(batch) < r.cfg.BatchSize {
					select {
					case rec := <-recs:
						batch = append(batch, rec)
					case <-linger.C:
						break wait
					case <-r.kick:
						// Someone waits for the read model: commit now and
						// catch up right after.
						kicked = true
						break wait
					case <-ctx.Done():
						linger.Stop()
						return ctx.Err()
					}
				}
				linger.Stop()
			}
			if err := r.apply(ctx, batch, 0); err != nil {
				return err
			}
			if kicked && len(recs) == 0 {
				kicked = false
				if err := r.catchUp(ctx); err != nil {
					return err
				}
			}

		case err := <-subDone:
			subRunning = false
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil {
				err = errors.New("subscription ended")
			}
			return fmt.Errorf("projections: %s: subscribe: %w", r.name, err)

		case <-r.kick:
			if len(recs) > 0 {
				// Apply what has arrived first; catch up once it is drained.
				kicked = true
				continue
			}
			kicked = false
			if err := r.catchUp(ctx); err != nil {
				return err
			}

		case <-ticker.C:
			if busy || len(recs) > 0 {
				busy = false
				continue
			}
			if err := r.catchUp(ctx); err != nil {
				return err
			}
		}
	}
}

// catchUp applies every matching event up to the store's current last position
// and moves the checkpoint to that position, past the events outside the filter.
// ReadAll covers all matching events up to the last position at the time of the
// call, which is at least head, so no matching event at or before head is left
// behind. Events the subscription delivers again later are skipped by apply.
func (r *Runner) catchUp(ctx context.Context) error {
	head, err := r.store.LastPosition(ctx)
	if err != nil {
		return fmt.Errorf("projections: %s: last position: %w", r.name, err)
	}
	if head <= r.Checkpoint() {
		return nil
	}
	batch := make([]eventstore.Record, 0, r.cfg.BatchSize)
	err = r.store.ReadAll(ctx, r.Checkpoint(), r.proj.Filter(), func(rec eventstore.Record) error {
		batch = append(batch, rec)
		if len(batch) < r.cfg.BatchSize {
			return nil
		}
		err := r.apply(ctx, batch, 0)
		batch = batch[:0]
		return err
	})
	if err != nil {
		var ae *ApplyError
		if errors.As(err, &ae) || ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("projections: %s: read: %w", r.name, err)
	}
	return r.apply(ctx, batch, head)
}

// apply commits the records of batch after the checkpoint, and moves the
// checkpoint to the last of them or to floor, whichever is greater, in ONE
// transaction: the projection's rows and the checkpoint are committed together
// or not at all, so a crash can neither lose an event (rows without checkpoint
// are impossible) nor count one twice (checkpoint without rows is impossible).
// Records at or before the checkpoint were applied already and are skipped.
func (r *Runner) apply(ctx context.Context, batch []eventstore.Record, floor uint64) error {
	from := r.Checkpoint()
	to := from
	todo := batch[:0:0]
	for _, rec := range batch {
		if rec.Position <= to {
			continue
		}
		todo = append(todo, rec)
		to = rec.Position
	}
	if floor > to {
		to = floor
	}
	if to == from {
		return nil
	}
	// The transaction runs to its end once started (cancellation is checked
	// between batches): a cancellable context makes database/sql and the driver
	// start a goroutine per statement, which cost ~10% of the ingest CPU.
	outer := ctx
	ctx = context.WithoutCancel(ctx)
	err := r.db.WithTx(ctx, func(tx *sql.Tx) error {
		if bp, ok := r.proj.(BatchProjection); ok && len(todo) > 0 {
			if err := bp.ApplyBatch(ctx, tx, todo); err != nil {
				return r.batchError(ctx, todo, err)
			}
			return readmodel.AdvanceCheckpoint(ctx, tx, r.name, from, to)
		}
		for _, rec := range todo {
			if err := r.proj.Apply(ctx, tx, rec); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return &ApplyError{
					Projection: r.name,
					Position:   rec.Position,
					Stream:     rec.Event.GetStream(),
					EventID:    rec.Event.GetEventId(),
					Err:        err,
				}
			}
		}
		// Same transaction as the rows above.
		return readmodel.AdvanceCheckpoint(ctx, tx, r.name, from, to)
	})
	if te, ok := r.proj.(txEnder); ok {
		// A projection's cache of committed rows must not keep what a failed
		// transaction wrote.
		te.txEnded(err == nil)
	}
	if err != nil {
		if outer.Err() != nil {
			return outer.Err()
		}
		return err
	}
	r.publish(to)
	return nil
}

// batchError turns a BatchProjection's error into the *ApplyError Run returns:
// as is when the projection named the event, else attributed to the batch.
func (r *Runner) batchError(ctx context.Context, batch []eventstore.Record, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ae *ApplyError
	if errors.As(err, &ae) {
		if ae.Projection == "" {
			ae.Projection = r.name
		}
		return err
	}
	first, last := batch[0], batch[len(batch)-1]
	return &ApplyError{
		Projection: r.name,
		Position:   first.Position,
		Stream:     first.Event.GetStream(),
		EventID:    first.Event.GetEventId(),
		Err:        fmt.Errorf("in a batch of %d events up to position %d: %w", len(batch), last.Position, err),
	}
}

// publish records a committed checkpoint and wakes WaitFor callers.
func (r *Runner) publish(cp uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cp = cp
	close(r.changed)
	r.changed = make(chan struct{})
}
