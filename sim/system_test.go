package sim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/services/clock"
)

// system is the ledger as billingd wires it, in one process: two command
// pipelines on one store (two API processes, for races), a usage writer and
// its organization directory (a second writer, another ingest process, is made
// for races), and the five projectors of billingd on one SQLite file.
type system struct {
	store eventstore.Store
	clock *clock.Simulated
	pipes [2]*commands.Pipeline
	view  *dirView
	// writer is the long-lived usage writer; restartWriter replaces it (a
	// process restart: the new one rebuilds its partition indexes).
	writer *commands.UsageWriter
	db     *readmodel.DB

	runners []*projections.Runner
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	runErr  chan error
}

// projectorConfig: a runner commits what has arrived at once (no linger), and
// moves past other projections' events when asked (WaitFor), not on a timer.
var projectorConfig = projections.RunnerConfig{Linger: -1, IdleInterval: time.Hour}

func newSystem(store eventstore.Store, dir string, start time.Time) (*system, error) {
	s := &system{store: store, clock: clock.NewSimulated(start, nil), runErr: make(chan error, 8)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for i := range s.pipes {
		s.pipes[i] = commands.New(store, s.clock, commands.Options{})
	}
	path := filepath.Join(dir, "readmodel.db")
	if err := copyTemplate(path); err != nil {
		return nil, err
	}
	db, err := readmodel.OpenSQLite(path)
	if err != nil {
		return nil, err
	}
	s.db = db
	s.view = &dirView{store: store}
	if err := s.view.refresh(s.ctx); err != nil {
		s.close()
		return nil, err
	}
	s.writer = s.newWriter()
	s.runners = s.startRunners(s.ctx, &s.wg, db, projectorConfig)
	return s, nil
}

// template is a read model database migrated once per test process: each
// seed starts from a copy of it (opening it only checks the schema version),
// which spares a full migration per seed.
var template struct {
	once sync.Once
	data []byte
	err  error
}

func copyTemplate(path string) error {
	template.once.Do(func() {
		dir, err := os.MkdirTemp("", "sim-template-")
		if err != nil {
			template.err = err
			return
		}
		defer os.RemoveAll(dir)
		file := filepath.Join(dir, "readmodel.db")
		db, err := readmodel.OpenSQLite(file)
		if err != nil {
			template.err = err
			return
		}
		if err := db.Close(); err != nil {
			template.err = err
			return
		}
		template.data, template.err = os.ReadFile(file)
	})
	if template.err != nil {
		return fmt.Errorf("read model template: %w", template.err)
	}
	return os.WriteFile(path, template.data, 0o600)
}

// startRunners runs billingd's five projectors on db until ctx ends.
func (s *system) startRunners(ctx context.Context, wg *sync.WaitGroup, db *readmodel.DB, cfg projections.RunnerConfig) []*projections.Runner {
	var out []*projections.Runner
	for _, p := range []projections.Projection{projections.Transfers{}, projections.Usage{}, projections.Proforma{},
		projections.Invoices{}, projections.Payments{}} {
		r := projections.NewRunner(db, s.store, p, cfg)
		out = append(out, r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				select {
				case s.runErr <- fmt.Errorf("projector %s stopped: %w", r.Name(), err):
				default:
				}
			}
		}()
	}
	return out
}

func (s *system) newWriter() *commands.UsageWriter {
	return commands.NewUsageWriter(s.store, s.clock, s.view, commands.UsageWriterOptions{})
}

// restartWriter replaces the usage writer by a new one (a restarted process).
func (s *system) restartWriter() { s.writer = s.newWriter() }

func (s *system) close() {
	s.cancel()
	s.wg.Wait()
	s.view.stop()
	if s.db != nil {
		_ = s.db.Close()
	}
}

func (s *system) setClock(t time.Time) error { return s.clock.Set(context.Background(), t) }

// exec runs one command on pipeline i (0 or 1). A rejection is returned as
// its code; anything else that fails is an error of the run.
func (s *system) exec(i int, cmd proto.Message) (*billingv1.CommandResult, domain.Code, error) {
	res, err := s.pipes[i].Execute(context.Background(), "sim", request(cmd))
	if err != nil {
		if code := domain.CodeOf(err); code != "" {
			return nil, code, nil
		}
		return nil, "", fmt.Errorf("%s: %w", name(cmd), err)
	}
	return res, "", nil
}

// wait blocks until the named projectors (every one when all) have applied
// the whole store.
func (s *system) wait(names []string, all bool) error {
	pos, err := s.store.LastPosition(context.Background())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, r := range s.runners {
		if !all && !slices.Contains(names, r.Name()) {
			continue
		}
		if err := r.WaitFor(ctx, pos); err != nil {
			select {
			case e := <-s.runErr:
				return e
			default:
			}
			return fmt.Errorf("projector %s at %d, waiting for %d: %w", r.Name(), r.Checkpoint(), pos, err)
		}
	}
	select {
	case e := <-s.runErr:
		return e
	default:
	}
	return nil
}

// request wraps a command message in the ExecuteRequest oneof field of its type.
func request(cmd proto.Message) *billingv1.ExecuteRequest {
	req := &billingv1.ExecuteRequest{}
	m := req.ProtoReflect()
	fields := m.Descriptor().Oneofs().ByName("command").Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); fd.Message().FullName() == cmd.ProtoReflect().Descriptor().FullName() {
			m.Set(fd, protoreflect.ValueOfMessage(cmd.ProtoReflect()))
			return req
		}
	}
	panic(fmt.Sprintf("sim: %T is not a command", cmd))
}

func name(cmd proto.Message) string { return string(cmd.ProtoReflect().Descriptor().Name()) }

// dirView is the usage writers' organization directory. The simulation moves
// the clock in jumps right after commands, where a real directory has a day
// (T3) to follow the store; so before every ingest step the directory is
// replaced by a fresh one that has loaded every organization event so far.
type dirView struct {
	store  eventstore.Store
	seen   [2]uint64 // the organization and account positions the directory loaded
	mu     sync.RWMutex
	dir    *commands.Directory
	stopFn context.CancelFunc
	done   chan struct{}
}

var _ domain.View = (*dirView)(nil)

// refreshIfChanged refreshes the directory when an organization or account
// event was appended since it was loaded.
func (v *dirView) refreshIfChanged(parent context.Context) error {
	pos, err := v.positions(parent)
	if err != nil || pos == v.seen {
		return err
	}
	return v.refresh(parent)
}

func (v *dirView) positions(ctx context.Context) ([2]uint64, error) {
	var out [2]uint64
	for i, f := range []string{"billing.org.>", "billing.account.>"} {
		p, err := v.store.LastPositionMatching(ctx, f)
		if err != nil {
			return out, err
		}
		out[i] = p
	}
	return out, nil
}

func (v *dirView) refresh(parent context.Context) error {
	pos, err := v.positions(parent)
	if err != nil {
		return err
	}
	v.seen = pos
	d := commands.NewDirectory(v.store)
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(done)
		errc <- d.Run(ctx)
	}()
	select {
	case <-d.Ready():
	case err := <-errc:
		cancel()
		return fmt.Errorf("directory: %w", err)
	}
	v.stop()
	v.mu.Lock()
	v.dir, v.stopFn, v.done = d, cancel, done
	v.mu.Unlock()
	return nil
}

func (v *dirView) stop() {
	v.mu.Lock()
	stop, done := v.stopFn, v.done
	v.stopFn, v.done = nil, nil
	v.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

func (v *dirView) current() *commands.Directory {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.dir
}

// Org implements domain.View.
func (v *dirView) Org(id string) (domain.Org, error) { return v.current().Org(id) }

// Transfer implements domain.View.
func (v *dirView) Transfer(id string) (domain.Transfer, error) { return v.current().Transfer(id) }

// AccountOwner implements domain.View.
func (v *dirView) AccountOwner(id string) (string, error) { return v.current().AccountOwner(id) }

// Events implements domain.View.
func (v *dirView) Events(stream string) ([]*billingv1.Event, error) {
	return v.current().Events(stream)
}
