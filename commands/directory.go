package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Directory is an in-memory domain.View of every organization and account
// claim, kept current by subscriptions to billing.org.> and billing.account.>.
// Usage ingestion reads it for every record, so it must not hit the store: a
// lookup that misses (e.g. an account registered a millisecond ago on another
// process) falls back to one read of the stream.
//
// Staleness is bounded by the subscription lag (milliseconds). It cannot
// misattribute usage: a transfer's acceptance is at least a day before its start
// month (T3), and a withdrawal never ends a transfer before the end of the
// current month (T5), so the payer of a month that has begun never changes.
type Directory struct {
	store eventstore.Store
	mu    sync.RWMutex
	// versions is the last version applied per organization stream, so the
	// initial load, the subscription and read-through misses can overlap.
	versions map[string]uint64
	state    map[string]domain.Org
	owner    map[string]string
	ready    chan struct{}
	once     sync.Once
}

var (
	_ domain.View         = (*Directory)(nil)
	_ domain.FamilyReader = (*Directory)(nil)
)

// NewDirectory returns an empty directory; Run fills it.
func NewDirectory(store eventstore.Store) *Directory {
	return &Directory{store: store, versions: map[string]uint64{}, state: map[string]domain.Org{}, owner: map[string]string{}, ready: make(chan struct{})}
}

// Run loads every organization and account, then follows new events until ctx
// ends. Ready is closed once the initial load is done.
func (d *Directory) Run(ctx context.Context) error {
	filters := []string{"billing.org.>", "billing.account.>"}
	from := make([]uint64, len(filters))
	for i, filter := range filters {
		err := d.store.ReadAll(ctx, 0, filter, func(r eventstore.Record) error {
			from[i] = r.Position
			return d.apply(r)
		})
		if err != nil {
			return fmt.Errorf("directory: load %s: %w", filter, err)
		}
	}
	d.once.Do(func() { close(d.ready) })
	errc := make(chan error, len(filters))
	for i, filter := range filters {
		go func() { errc <- d.store.Subscribe(ctx, from[i], filter, d.apply) }()
	}
	err := <-errc
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("directory: %w", err)
}

// Ready is closed once the directory holds every organization known at start.
func (d *Directory) Ready() <-chan struct{} { return d.ready }

func (d *Directory) apply(r eventstore.Record) error {
	ev := r.Event
	stream := ev.GetStream()
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case strings.HasPrefix(stream, "billing.org."):
		id := strings.TrimPrefix(stream, "billing.org.")
		if d.versions[id] >= ev.GetStreamVersion() {
			return nil // already applied (initial load and subscription overlap)
		}
		d.versions[id] = ev.GetStreamVersion()
		d.state[id] = domain.EvolveOrg(d.state[id], ev)
	case strings.HasPrefix(stream, "billing.account."):
		if c := ev.GetAccountClaimed(); c != nil {
			d.owner[c.GetAccountId()] = c.GetManagementAccountId()
		}
	}
	return nil
}

// Org implements domain.View.
func (d *Directory) Org(id string) (domain.Org, error) {
	d.mu.RLock()
	o, ok := d.state[id]
	d.mu.RUnlock()
	if ok {
		return o, nil
	}
	recs, err := d.store.ReadStream(context.Background(), domain.OrgStream(id))
	if err != nil {
		return domain.Org{}, err
	}
	for _, r := range recs {
		_ = d.apply(r)
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.state[id], nil
}

// Transfer implements domain.View; usage booking never needs it.
func (d *Directory) Transfer(id string) (domain.Transfer, error) {
	recs, err := d.store.ReadStream(context.Background(), domain.TransferStream(id))
	if err != nil {
		return domain.Transfer{}, err
	}
	evs := make([]*billingv1.Event, len(recs))
	for i, r := range recs {
		evs[i] = r.Event
	}
	return domain.FoldTransfer(evs), nil
}

// Events implements domain.View by reading the stream from the store; usage
// booking never needs it, so nothing is cached. The API authorizes billing
// views through it (domain.LoadBillingView), so a view granted, revoked or
// deleted by a command that returned is seen at once (read-your-writes).
func (d *Directory) Events(stream string) ([]*billingv1.Event, error) {
	recs, err := d.store.ReadStream(context.Background(), stream)
	if err != nil {
		return nil, err
	}
	evs := make([]*billingv1.Event, len(recs))
	for i, r := range recs {
		evs[i] = r.Event
	}
	return evs, nil
}

// EachFamilyEvent implements domain.FamilyReader by reading the family from
// the store, like Events: the API lists billing views with it
// (domain.AllBillingViews), so a list reflects every command that returned
// before it. Nothing is cached.
func (d *Directory) EachFamilyEvent(family string, fn func(*billingv1.Event) error) error {
	return d.store.ReadAll(context.Background(), 0, family, func(r eventstore.Record) error { return fn(r.Event) })
}

// AccountOwner implements domain.View.
func (d *Directory) AccountOwner(id string) (string, error) {
	d.mu.RLock()
	o, ok := d.owner[id]
	d.mu.RUnlock()
	if ok {
		return o, nil
	}
	recs, err := d.store.ReadStream(context.Background(), domain.AccountStream(id))
	if err != nil {
		return "", err
	}
	for _, r := range recs {
		_ = d.apply(r)
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.owner[id], nil
}
