package clock

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/billtransfer/ledger/domain"
)

var start = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)

func TestWallIsUTCAndNotSettable(t *testing.T) {
	t.Parallel()
	var w Wall
	if loc := w.Now().Location(); loc != time.UTC {
		t.Fatalf("Wall.Now location = %v, want UTC", loc)
	}
	if w.Simulated() {
		t.Fatal("Wall.Simulated() = true")
	}
	err := w.Set(context.Background(), start)
	if domain.CodeOf(err) != domain.CodeFailedPrecondition {
		t.Fatalf("Wall.Set error = %v, want FAILED_PRECONDITION", err)
	}
}

func TestSimulatedStandsStill(t *testing.T) {
	t.Parallel()
	c := NewSimulated(start.In(time.FixedZone("X", 3600)), nil)
	first := c.Now()
	time.Sleep(2 * time.Millisecond)
	if got := c.Now(); !got.Equal(first) || !got.Equal(start) || got.Location() != time.UTC {
		t.Fatalf("Now() = %v then %v, want %v (UTC) both times", first, got, start)
	}
	if !c.Simulated() {
		t.Fatal("Simulated() = false")
	}
}

func TestSimulatedSetForwardPersistsThenMoves(t *testing.T) {
	t.Parallel()
	var persisted []time.Time
	c := NewSimulated(start, func(_ context.Context, at time.Time) error {
		persisted = append(persisted, at)
		return nil
	})
	next := start.Add(48 * time.Hour)
	if err := c.Set(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if !c.Now().Equal(next) {
		t.Fatalf("Now() = %v, want %v", c.Now(), next)
	}
	if len(persisted) != 1 || !persisted[0].Equal(next) {
		t.Fatalf("persisted %v, want [%v]", persisted, next)
	}
	// Setting the same time again is a no-op that persists nothing.
	if err := c.Set(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if len(persisted) != 1 {
		t.Fatalf("persisted %d times, want 1", len(persisted))
	}
}

func TestSimulatedSetBackwardsRejectedNamingBothTimes(t *testing.T) {
	t.Parallel()
	c := NewSimulated(start, nil)
	earlier := start.Add(-time.Hour)
	err := c.Set(context.Background(), earlier)
	if domain.CodeOf(err) != domain.CodeInvalidArgument {
		t.Fatalf("error = %v, want INVALID_ARGUMENT", err)
	}
	for _, want := range []string{"2026-03-31T23:00:00Z", "2026-04-01T00:00:00Z"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if !c.Now().Equal(start) {
		t.Fatalf("clock moved to %v", c.Now())
	}
}

func TestSimulatedPersistFailureKeepsTime(t *testing.T) {
	t.Parallel()
	boom := errors.New("store down")
	c := NewSimulated(start, func(context.Context, time.Time) error { return boom })
	err := c.Set(context.Background(), start.Add(time.Hour))
	if !errors.Is(err, boom) {
		t.Fatalf("error = %v, want wrapping %v", err, boom)
	}
	if !c.Now().Equal(start) {
		t.Fatalf("clock moved to %v despite the persist failure", c.Now())
	}
}

func TestSimulatedObserveOnlyRaises(t *testing.T) {
	t.Parallel()
	calls := 0
	c := NewSimulated(start, func(context.Context, time.Time) error { calls++; return nil })
	later := start.Add(24 * time.Hour)
	c.Observe(later)
	c.Observe(start) // an older persisted value must not move the clock back
	if !c.Now().Equal(later) {
		t.Fatalf("Now() = %v, want %v", c.Now(), later)
	}
	if calls != 0 {
		t.Fatalf("Observe persisted %d times", calls)
	}
	if err := c.Set(context.Background(), start.Add(time.Hour)); domain.CodeOf(err) != domain.CodeInvalidArgument {
		t.Fatalf("Set before an observed time: error = %v, want INVALID_ARGUMENT", err)
	}
}

func TestSimulatedConcurrentSetIsMonotonic(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var persisted []time.Time
	c := NewSimulated(start, func(_ context.Context, at time.Time) error {
		mu.Lock()
		defer mu.Unlock()
		persisted = append(persisted, at)
		return nil
	})
	var wg sync.WaitGroup
	for i := 1; i <= 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Set(context.Background(), start.Add(time.Duration(i)*time.Minute))
			_ = c.Now()
		}()
	}
	wg.Wait()
	if want := start.Add(50 * time.Minute); !c.Now().Equal(want) {
		t.Fatalf("Now() = %v, want %v", c.Now(), want)
	}
	for i := 1; i < len(persisted); i++ {
		if !persisted[i].After(persisted[i-1]) {
			t.Fatalf("persisted out of order: %v", persisted)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     time.Time
		wantErr  bool
	}{
		{"rfc3339 utc", "2026-05-01T00:00:00Z", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), false},
		{"rfc3339 offset to utc", "2026-05-01T02:00:00+02:00", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), false},
		{"fractional seconds", "2026-05-01T00:00:00.5Z", time.Date(2026, 5, 1, 0, 0, 0, 5e8, time.UTC), false},
		{"date", "2026-05-01", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), false},
		{"surrounding space", " 2026-05-01 ", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), false},
		{"month only", "2026-05", time.Time{}, true},
		{"garbage", "tomorrow", time.Time{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Parse(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if !got.Equal(tc.want) || (err == nil && got.Location() != time.UTC) {
				t.Fatalf("Parse(%q) = %v, want %v UTC", tc.in, got, tc.want)
			}
		})
	}
}
