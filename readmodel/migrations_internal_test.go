package readmodel

import "testing"

// TestMigrationsAreOrdered: versions are 1, 2, ... SchemaVersion, never reordered.
func TestMigrationsAreOrdered(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 || m.name == "" || len(m.stmts) == 0 {
			t.Fatalf("migration %d: version %d, name %q, %d statements", i, m.version, m.name, len(m.stmts))
		}
	}
	if last := migrations[len(migrations)-1].version; last != SchemaVersion {
		t.Fatalf("SchemaVersion = %d, last migration = %d", SchemaVersion, last)
	}
}
