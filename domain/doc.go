// Package domain holds the ledger's pure business rules: aggregate state, the
// Evolve reducers that fold events into state, and the Decide functions that turn a
// command into events or a rejection. No I/O, no clock, no globals: time is passed
// in, and other aggregates are read through the View the caller provides, which
// also tells the caller which streams the decision depends on (their versions
// guard the append).
//
// Map of the package:
//   - errors.go     stable rejection codes and *Error
//   - values.go     account ids, ids, months and the time arithmetic of T2, T3, T5
//   - streams.go    stream names (DESIGN §2)
//   - org.go        the organization aggregate: accounts and transfer links
//   - transfer.go   the transfer aggregate: the invitation lifecycle (T1–T9)
//   - decide.go     View, Change and Decide, the single entry for every command
//   - pricing.go    pricing aggregates (P1–P5): rules, plans, billing groups,
//     custom line items, the account's group memberships, their streams and ids
//   - pricing_decide.go  the pricing commands and their invariants
//   - rating.go     the rating engine: the one rule that prices usage (P2, P3),
//     custom line items and a group's month total (P5)
//   - views.go      access (DESIGN §5): tokens as aggregates holding only their
//     hash (A1), billing views and their grants (A2), on whose behalf a
//     command acts (CommandParty) and the months a payer paid for (A3)
//
// Events and commands are the generated protobuf messages of proto/billing/v1;
// there is no mirror struct to keep in step.
package domain
