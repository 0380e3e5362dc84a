// Package lease shares a fixed list of named pieces of work among the
// processes that can run them: billingd's projector processes share the five
// projections this way (issue #8), so that two of them split the load, each
// projection runs in one process at a time, and a process that stops hands
// its projections to the others.
//
// The leases live in a JetStream key-value bucket (DefaultBucket) on the NATS
// server or cluster the processes share, at the event store's replication:
//
//   - "member.<owner>" says a process is alive (value: the work it refuses
//     for now, see below); "lease.<name>" says which process runs name (value:
//     its owner id). Every key expires TTL after it was last written: the
//     bucket's MaxAge, with a delete marker so that watchers see the expiry.
//   - A lease is taken with Create (only when the key does not exist, so at
//     most one process wins), renewed every TTL/3 with Update at the revision
//     it holds (compare-and-set), and released with Delete at that revision.
//     A renewal that finds another revision means the lease is lost: the work
//     is stopped. A watchdog per lease stops the work when no renewal has
//     succeeded for 5/6 TTL (NATS unreachable), before the key can expire
//     and be taken by another process.
//   - Balance: the live members, sorted by owner id, take the names
//     round-robin in the order given to New (the i-th name goes to member
//     i mod n), so two processes split five names 3/2, and names listed
//     next to each other (billingd lists the two heavy projections first) go
//     to different processes. Each process takes the free leases assigned to
//     it, and releases (stops, then deletes) the ones it holds that are
//     assigned to another live member. A new member is thus given its share
//     within one renewal period, and a process that stops gracefully deletes
//     its keys, which the others watch: they take its work at once. One that
//     crashes loses its keys by expiry, within TTL.
//   - Work that fails (returns while its lease is held) is logged, its lease
//     released, and its name refused by this process for a cooldown (TTL,
//     doubling per consecutive failure up to MaxCooldown), published in the
//     member key so that the assignment skips this process for that name: a
//     failure specific to one process (an older binary during a rolling
//     deploy) moves the work elsewhere, and one that every process meets is
//     retried at a bounded rate instead of in a tight loop.
//
// A lease narrows, but cannot close, the window in which two processes run
// the same work (a process paused for longer than TTL resumes believing it
// holds its leases until its next renewal fails): the work itself must
// tolerate a second runner. billingd's projections do: rows and checkpoint
// are committed in one transaction with a compare-and-set on the checkpoint
// (readmodel.ErrCheckpointMoved), so a second runner's commit fails and
// nothing is applied twice.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config.
const (
	// DefaultBucket is the key-value bucket of the leases.
	DefaultBucket = "BILLING_LEASES"
	// DefaultTTL is how long a lease outlives its last renewal.
	DefaultTTL = 10 * time.Second
	// DefaultMaxCooldown bounds the cooldown after failed work.
	DefaultMaxCooldown = 5 * time.Minute
)

// Key prefixes in the bucket.
const (
	memberPrefix = "member."
	leasePrefix  = "lease."
)

// maxOpTimeout bounds one key-value operation (and TTL/4 does too).
const maxOpTimeout = 5 * time.Second

// Config tunes a Manager; the zero value uses the defaults.
type Config struct {
	// Bucket is the key-value bucket; "" = DefaultBucket. Every process that
	// shares the work must use the same bucket and TTL.
	Bucket string
	// TTL is how long a lease or membership outlives its last renewal, the
	// bucket's MaxAge; 0 = DefaultTTL. Renewals happen every TTL/3. A crashed
	// process's work is taken over within about TTL.
	TTL time.Duration
	// Replicas of the bucket: 1 on a single server, 3 on a cluster; 0 = 1.
	Replicas int
	// Owner identifies this process in the bucket; "" = NewOwnerID().
	Owner string
	// MaxCooldown bounds how long this process refuses a name after its work
	// failed; 0 = DefaultMaxCooldown. The first cooldown is TTL.
	MaxCooldown time.Duration
	// Logger receives acquisitions, releases, losses and failures; nil =
	// slog.Default().
	Logger *slog.Logger
}

// Work runs name while this process holds its lease. It must return once ctx
// ends (the lease is being released or was lost); returning earlier, with or
// without an error, counts as a failure (see the package comment).
type Work func(ctx context.Context, name string) error

// Manager takes, renews and releases the leases of one process. Run it once.
type Manager struct {
	kv    jetstream.KeyValue
	names []string
	work  Work
	cfg   Config
	owner string
	log   *slog.Logger

	mu    sync.Mutex
	held  map[string]*holding // guarded by mu (written by the Run goroutine only)
	known map[string]bool     // keys of the last snapshot; guarded by mu

	// Owned by the Run goroutine.
	memberRev uint64
	failures  map[string]int
	refuse    map[string]time.Time // name → end of its cooldown
}

// holding is a lease this process holds and the work running under it.
type holding struct {
	name      string
	rev       uint64
	renewedAt time.Time // when the last successful Create or Update was sent
	startedAt time.Time
	watchdog  *time.Timer // cancels the work 5/6 TTL after renewedAt
	expired   atomic.Bool // the watchdog fired
	cancel    context.CancelFunc
	done      chan struct{} // closed when the work has returned
	err       error         // the work's result, set before done is closed
	stopping  bool          // this process stopped it (release or loss)
}

var ownerChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// NewOwnerID returns a process id for the bucket: the host name, the pid and
// 32 random bits, so that a restarted process never mistakes the leases of
// its previous life for its own.
func NewOwnerID() string {
	host, _ := os.Hostname()
	host = strings.Trim(ownerChars.ReplaceAllString(host, "-"), "-")
	if host == "" {
		host = "host"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// New creates (or updates) the bucket on nc's JetStream and returns a
// manager of the leases of names for this process. The order of names is the
// order of assignment (see the package comment).
func New(ctx context.Context, nc *nats.Conn, names []string, work Work, cfg Config) (*Manager, error) {
	if len(names) == 0 || work == nil {
		return nil, errors.New("lease: New needs names and work")
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Owner == "" {
		cfg.Owner = NewOwnerID()
	}
	if ownerChars.MatchString(cfg.Owner) {
		return nil, fmt.Errorf("lease: owner id %q: only letters, digits, '-' and '_'", cfg.Owner)
	}
	if cfg.MaxCooldown <= 0 {
		cfg.MaxCooldown = DefaultMaxCooldown
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	kvc := jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "billingd projector leases (services/lease): member.<owner> and lease.<projection>, expiring after the TTL",
		TTL:         cfg.TTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		// A delete marker when a key expires, so that watchers learn of it
		// (a crashed owner's leases are taken at once when they expire).
		LimitMarkerTTL: max(cfg.TTL, time.Second),
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, kvc)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		// A server older than 2.11: expiries are found by the periodic pass.
		kvc.LimitMarkerTTL = 0
		kv, err = js.CreateOrUpdateKeyValue(ctx, kvc)
	}
	if err != nil {
		return nil, fmt.Errorf("lease: create or update bucket %s: %w", cfg.Bucket, err)
	}
	return &Manager{
		kv:       kv,
		names:    slices.Clone(names),
		work:     work,
		cfg:      cfg,
		owner:    cfg.Owner,
		log:      log.With("lease_owner", cfg.Owner),
		held:     map[string]*holding{},
		known:    map[string]bool{},
		failures: map[string]int{},
		refuse:   map[string]time.Time{},
	}, nil
}

// Owner is this process's owner id.
func (m *Manager) Owner() string { return m.owner }

// Held returns the names whose lease this process holds, in the order given
// to New.
func (m *Manager) Held() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, n := range m.names {
		if _, ok := m.held[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// Run takes, renews and releases leases and runs their work until ctx ends;
// then it stops every work, deletes its leases and its membership, and
// returns nil. It returns an error only when the bucket cannot be watched at
// all.
func (m *Manager) Run(ctx context.Context) error {
	quit := make(chan struct{})
	defer close(quit)
	exits := make(chan *holding)
	wake := make(chan struct{}, 1)
	poke := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	watcher, err := m.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("lease: watch bucket %s: %w", m.cfg.Bucket, err)
	}
	go func() {
		// A deleted or expired key, or a key the last snapshot did not have
		// (a new member, a lease taken): look again at once. Renewals (puts
		// of known keys) are ignored.
		for e := range watcher.Updates() {
			if e == nil {
				continue
			}
			m.mu.Lock()
			known := m.known[e.Key()]
			m.mu.Unlock()
			if e.Operation() != jetstream.KeyValuePut || !known {
				poke()
			}
		}
	}()
	defer func() { _ = watcher.Stop() }()
	defer m.shutdown(ctx)

	tick := time.NewTicker(m.cfg.TTL / 3)
	defer tick.Stop()
	m.pass(ctx, exits, quit)
	for {
		select {
		case <-ctx.Done():
			return nil
		case h := <-exits:
			m.exited(ctx, h)
			m.pass(ctx, exits, quit)
		case <-wake:
			m.pass(ctx, exits, quit)
		case <-tick.C:
			m.pass(ctx, exits, quit)
		}
	}
}

// member is what a member key holds.
type member struct {
	// Refuse lists the names this process will not take for now.
	Refuse []string `json:"refuse,omitempty"`
}

// entry is one live key of a snapshot.
type entry struct {
	value []byte
	rev   uint64
}

// pass renews the membership and the leases held, then takes and releases
// leases so that this process runs the names assigned to it.
func (m *Manager) pass(ctx context.Context, exits chan *holding, quit chan struct{}) {
	if ctx.Err() != nil {
		return
	}
	memberOK := m.renewMember(ctx)
	m.renewLeases(ctx)
	snap, err := m.snapshot(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("lease: read the bucket", "err", err)
		}
		return
	}
	members := map[string]member{}
	leases := map[string]entry{}
	for k, e := range snap {
		switch {
		case strings.HasPrefix(k, memberPrefix):
			var v member
			_ = json.Unmarshal(e.value, &v) // unreadable: refuses nothing
			members[strings.TrimPrefix(k, memberPrefix)] = v
		case strings.HasPrefix(k, leasePrefix):
			leases[strings.TrimPrefix(k, leasePrefix)] = e
		}
	}
	if _, ok := members[m.owner]; !ok || !memberOK {
		// Not a visible member: take and give nothing until we are.
		return
	}
	owners := make([]string, 0, len(members))
	for o := range members {
		owners = append(owners, o)
	}
	slices.Sort(owners)
	for i, name := range m.names {
		var cands []string
		for _, o := range owners {
			if !slices.Contains(members[o].Refuse, name) {
				cands = append(cands, o)
			}
		}
		desired := ""
		if len(cands) > 0 {
			desired = cands[i%len(cands)]
		}
		m.mu.Lock()
		h, mine := m.held[name]
		m.mu.Unlock()
		e, taken := leases[name]
		switch {
		case mine && desired != "" && desired != m.owner:
			m.release(ctx, h, "assigned to "+desired)
		case mine:
		case taken && string(e.value) == m.owner:
			// Ours, but no longer held here (its renewal failed for too
			// long): free it for whoever it is assigned to.
			dctx, cancel := context.WithTimeout(ctx, m.opTimeout())
			_ = m.kv.Delete(dctx, leasePrefix+name, jetstream.LastRevision(e.rev))
			cancel()
		case !taken && desired == m.owner:
			m.acquire(ctx, name, exits, quit)
		}
	}
}

// renewMember writes this process's member key; it reports whether the key
// is current.
func (m *Manager) renewMember(ctx context.Context) bool {
	now := time.Now()
	var v member
	for _, n := range m.names {
		if until, ok := m.refuse[n]; ok {
			if now.Before(until) {
				v.Refuse = append(v.Refuse, n)
			} else {
				delete(m.refuse, n)
			}
		}
	}
	val, _ := json.Marshal(v)
	key := memberPrefix + m.owner
	octx, cancel := context.WithTimeout(ctx, m.opTimeout())
	defer cancel()
	if m.memberRev != 0 {
		rev, err := m.kv.Update(octx, key, val, m.memberRev)
		if err == nil {
			m.memberRev = rev
			return true
		}
		if ctx.Err() != nil {
			return false // shutting down: the member key is deleted next
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			m.log.Warn("lease: renew membership", "err", err)
			return false
		}
		// Expired (a long pause or a lost connection): join again.
		m.memberRev = 0
	}
	rev, err := m.kv.Create(octx, key, val)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("lease: join", "err", err)
		}
		return false
	}
	m.memberRev = rev
	return true
}

// renewLeases renews every lease held; a lease that cannot be renewed is lost
// and its work stopped.
func (m *Manager) renewLeases(ctx context.Context) {
	for _, name := range m.names {
		m.mu.Lock()
		h, ok := m.held[name]
		m.mu.Unlock()
		if !ok {
			continue
		}
		sent := time.Now()
		octx, cancel := context.WithTimeout(ctx, m.opTimeout())
		rev, err := m.kv.Update(octx, leasePrefix+name, []byte(m.owner), h.rev)
		cancel()
		switch {
		case err == nil:
			h.rev, h.renewedAt = rev, sent
			h.watchdog.Reset(time.Until(sent.Add(m.safeFor())))
		case ctx.Err() != nil:
			return
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			m.lose(h, "the lease expired or was taken over")
		default:
			// The watchdog stops the work if this goes on.
			m.log.Warn("lease: renew", "name", name, "err", err)
		}
	}
}

// snapshot reads every live key of the bucket.
func (m *Manager) snapshot(ctx context.Context) (map[string]entry, error) {
	octx, cancel := context.WithTimeout(ctx, m.opTimeout())
	defer cancel()
	w, err := m.kv.WatchAll(octx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	out := map[string]entry{}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("watcher closed")
			}
			if e == nil {
				m.mu.Lock()
				m.known = map[string]bool{}
				for k := range out {
					m.known[k] = true
				}
				m.mu.Unlock()
				return out, nil
			}
			if e.Operation() == jetstream.KeyValuePut {
				out[e.Key()] = entry{value: e.Value(), rev: e.Revision()}
			} else {
				delete(out, e.Key())
			}
		case <-octx.Done():
			return nil, octx.Err()
		}
	}
}

// acquire takes name's lease if it is free and starts its work.
func (m *Manager) acquire(ctx context.Context, name string, exits chan *holding, quit chan struct{}) {
	sent := time.Now()
	octx, cancel := context.WithTimeout(ctx, m.opTimeout())
	rev, err := m.kv.Create(octx, leasePrefix+name, []byte(m.owner))
	cancel()
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
			m.log.Warn("lease: acquire", "name", name, "err", err)
		}
		return
	}
	wctx, stop := context.WithCancel(ctx)
	h := &holding{name: name, rev: rev, renewedAt: sent, startedAt: sent, cancel: stop, done: make(chan struct{})}
	m.mu.Lock()
	m.held[name] = h
	m.mu.Unlock()
	h.watchdog = time.AfterFunc(time.Until(sent.Add(m.safeFor())), func() {
		h.expired.Store(true)
		h.cancel()
	})
	m.log.Info("lease acquired", "name", name)
	go func() {
		h.err = m.work(wctx, name)
		close(h.done)
		select {
		case exits <- h:
		case <-quit:
		}
	}()
}

// safeFor is how long after a successful renewal (counted from when it was
// sent, which is no later than the server's timestamp that starts the TTL)
// the work may run without another one.
func (m *Manager) safeFor() time.Duration { return m.cfg.TTL * 5 / 6 }

// opTimeout bounds one key-value operation.
func (m *Manager) opTimeout() time.Duration { return min(maxOpTimeout, m.cfg.TTL/4) }

// stop stops h's work and forgets it; it returns once the work has returned.
func (m *Manager) stop(h *holding) {
	h.stopping = true
	h.watchdog.Stop()
	h.cancel()
	<-h.done
	m.mu.Lock()
	if m.held[h.name] == h {
		delete(m.held, h.name)
	}
	m.mu.Unlock()
}

// release stops h's work, then deletes its lease so that another process
// can take it at once.
func (m *Manager) release(ctx context.Context, h *holding, why string) {
	m.stop(h)
	if err := m.deleteOwn(ctx, leasePrefix+h.name, h.rev, func(v []byte) bool { return string(v) == m.owner }); err != nil {
		m.log.Warn("lease: release", "name", h.name, "err", err)
		return
	}
	m.log.Info("lease released", "name", h.name, "why", why)
}

// deleteOwn deletes key, last written by this process at rev. A write whose
// reply was lost (its context ended: a shutdown during a renewal) may have
// moved the key past rev: then the key is read again and deleted at its
// current revision if ours says it is still this process's. It works after
// ctx has ended.
func (m *Manager) deleteOwn(ctx context.Context, key string, rev uint64, ours func([]byte) bool) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opTimeout())
	defer cancel()
	err := m.kv.Delete(dctx, key, jetstream.LastRevision(rev))
	if err == nil || !wrongRevision(err) {
		return err
	}
	e, gerr := m.kv.Get(dctx, key)
	switch {
	case errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted):
		return nil // expired or deleted already
	case gerr != nil:
		return gerr
	case !ours(e.Value()):
		return nil // another process's now
	}
	return m.kv.Delete(dctx, key, jetstream.LastRevision(e.Revision()))
}

// wrongRevision reports whether err is a compare-and-set failure.
func wrongRevision(err error) bool {
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// lose stops the work of a lease that is no longer ours.
func (m *Manager) lose(h *holding, why string) {
	m.stop(h)
	m.log.Warn("lease lost: work stopped", "name", h.name, "why", why)
}

// exited handles work that returned by itself: a failure.
func (m *Manager) exited(ctx context.Context, h *holding) {
	if h.stopping {
		return
	}
	m.mu.Lock()
	current := m.held[h.name] == h
	m.mu.Unlock()
	if !current {
		return
	}
	if h.expired.Load() {
		// The watchdog stopped it: the lease may have expired already.
		m.stop(h)
		m.log.Warn("lease lost: work stopped", "name", h.name, "why", fmt.Sprintf("not renewed for %s", m.safeFor()))
		_ = m.deleteOwn(ctx, leasePrefix+h.name, h.rev, func(v []byte) bool { return string(v) == m.owner })
		return
	}
	if time.Since(h.startedAt) > m.cfg.MaxCooldown {
		m.failures[h.name] = 0 // it ran well for a long time: start the cooldowns over
	}
	m.failures[h.name]++
	cool := m.cfg.TTL
	for i := 1; i < m.failures[h.name] && cool < m.cfg.MaxCooldown; i++ {
		cool *= 2
	}
	cool = min(cool, m.cfg.MaxCooldown)
	m.refuse[h.name] = time.Now().Add(cool)
	err := h.err
	if err == nil {
		err = errors.New("work returned while its lease was held")
	}
	m.log.Error("leased work failed: lease released, name refused here for a while", "name", h.name, "cooldown", cool, "err", err)
	// Publish the refusal before the release wakes the other members, so
	// that they assign the name without this process.
	m.renewMember(ctx)
	m.release(ctx, h, "its work failed")
}

// shutdown stops every work and deletes this process's leases and member key.
func (m *Manager) shutdown(ctx context.Context) {
	for _, name := range m.names {
		m.mu.Lock()
		h, ok := m.held[name]
		m.mu.Unlock()
		if ok {
			m.release(ctx, h, "shutting down")
		}
	}
	// A lease created by a write whose reply was lost to the shutdown is ours
	// but not held: delete it too, so that nobody waits for it to expire.
	ours := func(v []byte) bool { return string(v) == m.owner }
	if snap, err := m.snapshot(context.WithoutCancel(ctx)); err == nil {
		for k, e := range snap {
			if strings.HasPrefix(k, leasePrefix) && ours(e.value) {
				_ = m.deleteOwn(ctx, k, e.rev, ours)
			}
		}
	}
	// The member key is ours by its name (revision 0 = delete whatever it holds).
	if err := m.deleteOwn(ctx, memberPrefix+m.owner, m.memberRev, func([]byte) bool { return true }); err != nil {
		m.log.Warn("lease: leave", "err", err)
	}
}
