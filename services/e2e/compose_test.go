package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestComposeFile validates docker-compose.yml without a Docker engine (issue
// #8 item 5): it parses, has the three NATS nodes, PostgreSQL, the billingd
// roles with two projectors and the eventstoredb profile (whose variables move
// every billingd process to KurrentDB), and every billingd
// command uses only flags that `billingd --help` lists, with valid roles.
// Where the docker compose plugin exists, `docker compose config` must accept
// the file too.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "..", "docker-compose.yml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]struct {
			Image    string   `yaml:"image"`
			Command  []string `yaml:"command"`
			Profiles []string `yaml:"profiles"`
			Build    any      `yaml:"build"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	help, err := exec.Command(billingdBin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("billingd --help: %v\n%s", err, help)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`--([a-z][a-z0-9-]*)`).FindAllStringSubmatch(string(help), -1) {
		known[m[1]] = true
	}
	roles := map[string]int{}
	for name, svc := range file.Services {
		if svc.Build == nil {
			continue
		}
		if len(svc.Command) == 0 {
			t.Errorf("service %s builds billingd but has no command", name)
		}
		// Profile eventstoredb (make up-kurrentdb) swaps the store of every process.
		for _, want := range []string{"--store=${BILLING_STORE:-jetstream}", "--eventstore-url=${BILLING_EVENTSTORE_URL:-}"} {
			if !slices.Contains(svc.Command, want) {
				t.Errorf("service %s: no %s, so `make up-kurrentdb` would not move it to KurrentDB", name, want)
			}
		}
		for _, arg := range svc.Command {
			flag, value, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
			if !strings.HasPrefix(arg, "--") || !known[flag] {
				t.Errorf("service %s: %q is not a flag billingd --help lists", name, arg)
			}
			if flag == "role" {
				for _, r := range strings.Split(value, ",") {
					switch r {
					case "command", "ingest", "projector", "query", "all":
						roles[r]++
					default:
						t.Errorf("service %s: unknown role %q", name, r)
					}
				}
			}
		}
	}
	for _, want := range []string{"nats-1", "nats-2", "nats-3", "postgres", "kurrentdb"} {
		if _, ok := file.Services[want]; !ok {
			t.Errorf("no service %s", want)
		}
	}
	if roles["projector"] != 2 || roles["command"] != 1 || roles["ingest"] != 1 || roles["query"] != 1 {
		t.Errorf("roles %v, want one command, ingest and query process and two projectors", roles)
	}
	if p := file.Services["kurrentdb"].Profiles; len(p) != 1 || p[0] != "eventstoredb" {
		t.Errorf("kurrentdb profiles %v, want [eventstoredb]", p)
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		if out, err := exec.Command("docker", "compose", "-f", path, "config", "--quiet").CombinedOutput(); err != nil {
			t.Errorf("docker compose config: %v\n%s", err, out)
		}
	} else {
		t.Log("no docker compose plugin: validated by parsing and the flag check only")
	}
}
