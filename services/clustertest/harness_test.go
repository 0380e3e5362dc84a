package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/projections"
	"github.com/billtransfer/ledger/readmodel"
)

// clusterSize is the number of servers, and the stream's replicas (R3).
const clusterSize = 3

// TestMain fails the package when goroutines outlive its tests: every server,
// connection, directory and runner a test starts must be stopped by its
// cleanups. nats-server and nats.go stop some goroutines a moment after
// Shutdown and Close return, so the count is given a few seconds to settle.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "clustertest: %d goroutines left after the tests (%d before):\n%s\n", n, before, buf)
			code = 1
		}
	}
	os.Exit(code)
}

// cluster is a JetStream cluster of clusterSize servers in this process.
type cluster struct {
	t     *testing.T
	nodes []*node
}

// node is one server of the cluster. Its name, ports and store directory stay
// the same across a stop and a restart, so it rejoins as the same peer.
type node struct {
	name       string
	dir        string
	clientPort int
	routePort  int
	routes     string

	mu  sync.Mutex
	srv *natsserver.Server // nil while stopped
}

// startCluster starts the servers on free loopback ports and stops them when
// the test ends.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	ports := freePorts(t, 2*clusterSize)
	routes := make([]string, clusterSize)
	for i := range routes {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[clusterSize+i])
	}
	c := &cluster{t: t}
	for i := range clusterSize {
		c.nodes = append(c.nodes, &node{
			name:       fmt.Sprintf("n%d", i),
			dir:        t.TempDir(),
			clientPort: ports[i],
			routePort:  ports[clusterSize+i],
			routes:     strings.Join(routes, ","),
		})
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.stop()
		}
	})
	for _, n := range c.nodes {
		if err := n.start(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	out := make([]int, n)
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out[i] = l.Addr().(*net.TCPAddr).Port
	}
	return out
}

// options are built anew for every start: nats-server keeps and changes the
// Options it is given.
func (n *node) options() *natsserver.Options {
	return &natsserver.Options{
		ServerName: n.name,
		Host:       "127.0.0.1",
		Port:       n.clientPort,
		JetStream:  true,
		StoreDir:   n.dir,
		NoSigs:     true,
		NoLog:      true,
		Cluster:    natsserver.ClusterOpts{Name: "billing", Host: "127.0.0.1", Port: n.routePort},
		Routes:     natsserver.RoutesFromStr(n.routes),
	}
}

// start starts the server (again) and returns once it accepts clients.
func (n *node) start() error {
	srv, err := natsserver.NewServer(n.options())
	if err != nil {
		return fmt.Errorf("server %s: %w", n.name, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("server %s not ready on port %d", n.name, n.clientPort)
	}
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
	return nil
}

// stop shuts the server down (a no-op when it is stopped) and returns once it
// has stopped.
func (n *node) stop() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

func (n *node) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort) }

// node returns the server named name.
func (c *cluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no server named %q", name)
	return nil
}

// connect opens a NATS connection that tries the server named first before the
// others, and reconnects for ever (as billingd's does), to whichever server is
// up. It is closed when the test ends.
func (c *cluster) connect(t *testing.T, first, name string) *nats.Conn {
	t.Helper()
	urls := []string{c.node(first).url()}
	for _, n := range c.nodes {
		if n.name != first {
			urls = append(urls, n.url())
		}
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Name(name), nats.DontRandomize(),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// openStore opens the event store on the R3 stream, retrying while the
// cluster elects its JetStream meta leader.
func openStore(t *testing.T, ctx context.Context, nc *nats.Conn) *jetstream.Store {
	t.Helper()
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := jetstream.Open(actx, nc, jetstream.Config{Replicas: clusterSize})
		cancel()
		if err == nil {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("open the R3 event store: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// streamInfo reads the BILLING stream's info (answered by its leader).
func streamInfo(ctx context.Context, nc *nats.Conn) (*natsjs.StreamInfo, error) {
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := js.Stream(actx, jetstream.DefaultStreamName)
	if err != nil {
		return nil, err
	}
	return st.Info(actx)
}

// streamLeader returns the name of the BILLING stream's leader, waiting while
// there is none.
func streamLeader(ctx context.Context, nc *nats.Conn) (string, error) {
	for {
		info, err := streamInfo(ctx, nc)
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
			return info.Cluster.Leader, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no stream leader: %v (%w)", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitHealthy waits until the stream has a leader and both other replicas are
// current, and returns the leader's name.
func waitHealthy(ctx context.Context, nc *nats.Conn) (string, error) {
	var last string
	for {
		info, err := streamInfo(ctx, nc)
		switch {
		case err != nil:
			last = err.Error()
		case info.Cluster == nil || info.Cluster.Leader == "":
			last = "no leader"
		default:
			current := 0
			for _, r := range info.Cluster.Replicas {
				if r.Current && !r.Offline {
					current++
				}
			}
			if current == clusterSize-1 {
				return info.Cluster.Leader, nil
			}
			last = fmt.Sprintf("leader %s, %d of %d other replicas current", info.Cluster.Leader, current, clusterSize-1)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("stream not healthy: %s (%w)", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fixedClock is the ledger clock of a test: it does not move.
type fixedClock struct{ now time.Time }

// Now implements commands.Clock.
func (c fixedClock) Now() time.Time { return c.now }

// supervisor keeps a projection's runner going on a read model database: when
// a runner stops with an error (e.g. its subscription failed while the stream
// had no leader), it logs the error and starts a new runner on the same
// database, which resumes from the committed checkpoint (a Runner is used once;
// see projections.Runner). It stops when the test ends.
type supervisor struct {
	name string
	done chan struct{}

	mu       sync.Mutex
	current  *projections.Runner
	restarts int
}

// supervise starts the supervisor of proj on db and store.
func supervise(t *testing.T, db *readmodel.DB, store *jetstream.Store, proj projections.Projection) *supervisor {
	ctx, cancel := context.WithCancel(context.Background())
	s := &supervisor{name: proj.Name(), done: make(chan struct{})}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	newRunner := func() *projections.Runner {
		r := projections.NewRunner(db, store, proj, projections.RunnerConfig{IdleInterval: 100 * time.Millisecond, Logger: quiet})
		s.mu.Lock()
		s.current = r
		s.mu.Unlock()
		return r
	}
	r := newRunner()
	go func() {
		defer close(s.done)
		for {
			err := r.Run(ctx)
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
			t.Logf("%s runner stopped at checkpoint %d, restarting it: %v", s.name, r.Checkpoint(), err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			r = newRunner()
		}
	}()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

// waitFor waits until the projection's checkpoint is at least position, across
// runner restarts.
func (s *supervisor) waitFor(ctx context.Context, position uint64) error {
	for {
		s.mu.Lock()
		r := s.current
		s.mu.Unlock()
		err := r.WaitFor(ctx, position)
		if err == nil || !errors.Is(err, projections.ErrRunnerStopped) {
			return err
		}
		for {
			s.mu.Lock()
			next := s.current
			s.mu.Unlock()
			if next != r {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: %w (last runner: %v)", s.name, ctx.Err(), err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// restartCount is how many times the supervisor restarted a failed runner.
func (s *supervisor) restartCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// waitApplied waits until every running server's replica of the stream has
// applied position: a direct get through a connection to that server is
// answered by its own replica (NATS prefers a local queue subscriber), and
// must find the message at position.
func waitApplied(t *testing.T, ctx context.Context, c *cluster, position uint64) {
	t.Helper()
	for _, n := range c.nodes {
		n.mu.Lock()
		up := n.srv != nil
		n.mu.Unlock()
		if !up {
			continue
		}
		nc, err := nats.Connect(n.url(), nats.NoReconnect())
		if err != nil {
			t.Fatal(err)
		}
		err = func() error {
			defer nc.Close()
			js, err := natsjs.New(nc)
			if err != nil {
				return err
			}
			for {
				actx, cancel := context.WithTimeout(ctx, time.Second)
				var st natsjs.Stream
				if st, err = js.Stream(actx, jetstream.DefaultStreamName); err == nil {
					_, err = st.GetMsg(actx, position) // a direct get: the stream allows them
				}
				cancel()
				if err == nil {
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("server %s has not applied position %d: %v", n.name, position, err)
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		if err != nil {
			t.Fatal(err)
		}
	}
}
