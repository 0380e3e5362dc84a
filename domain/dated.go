package domain

import (
	"slices"
	"time"
)

// datedHistory is a history of values by the day they take effect
// (YYYY-MM-DD), one value per day, sorted: a jurisdiction's tax rates (X4) and a
// currency pair's exchange rates (M1). A later value for a day replaces the
// earlier one; the value in force on a day is the one with the latest day on
// or before it.
type datedHistory[T any] struct {
	days []string
	vals []T
}

// put records v from day on, replacing an earlier value for the same day.
func (h *datedHistory[T]) put(day string, v T) {
	i, found := slices.BinarySearch(h.days, day)
	if found {
		h.vals[i] = v
		return
	}
	h.days = slices.Insert(h.days, i, day)
	h.vals = slices.Insert(h.vals, i, v)
}

// at returns the value in force on day.
func (h datedHistory[T]) at(day time.Time) (T, bool) {
	i, found := slices.BinarySearch(h.days, day.UTC().Format(time.DateOnly))
	if !found {
		i-- // the last day before it
	}
	if i < 0 {
		var zero T
		return zero, false
	}
	return h.vals[i], true
}
