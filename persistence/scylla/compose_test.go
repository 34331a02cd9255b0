package scylla

import (
	"bufio"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The docker-compose.yml at the repository root cannot be run on CI
// machines (no Docker engine), so this test checks what can be checked
// without one: its shape, and that every service, port and environment
// variable it names matches what the binary reads.

const repoRoot = "../.."

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	Configs  map[string]struct {
		Content string `yaml:"content"`
	} `yaml:"configs"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     yaml.Node         `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Ports   []string `yaml:"ports"`
	Restart string   `yaml:"restart"`
	Configs []struct {
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	} `yaml:"configs"`
}

// command returns the service's command as words.
func (s composeService) command(t *testing.T) []string {
	switch s.Command.Kind {
	case 0:
		return nil
	case yaml.ScalarNode:
		return strings.Fields(s.Command.Value)
	case yaml.SequenceNode:
		var out []string
		if err := s.Command.Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Fatalf("command of unexpected YAML kind %v", s.Command.Kind)
	return nil
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// knownEnv returns every environment variable the checkin binary reads:
// the env twins of its flags, the Scylla credentials and the API keys
// (edge.EnvAPIKeys).
func knownEnv(t *testing.T) map[string]bool {
	t.Helper()
	env := map[string]bool{EnvUsername: true, EnvPassword: true, "CHECKIN_HTTP_API_KEYS": true}
	var c Config
	fs := flag.NewFlagSet("scylla", flag.ContinueOnError)
	c.RegisterFlags(fs)
	fs.VisitAll(func(f *flag.Flag) { env[envName(f.Name)] = true })
	for _, name := range cmdFlags(t) {
		env[envName(name)] = true
	}
	return env
}

// cmdFlags returns the flag names cmd/checkin registers itself, read from
// its source: the string-literal name argument of every fs.XxxVar / fs.Var /
// fs.Func call. (Its main package cannot be imported, and running it needs a
// build; the scylla.* flags come from Config.RegisterFlags above.)
func cmdFlags(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join(repoRoot, "cmd", "checkin")
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			arg := -1
			switch name := sel.Sel.Name; {
			case name == "Func" || name == "BoolFunc":
				arg = 0
			case strings.HasSuffix(name, "Var") && name != "NewVar":
				arg = 1
			}
			if arg < 0 || len(call.Args) <= arg {
				return true
			}
			if lit, ok := call.Args[arg].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					names = append(names, s)
				}
			}
			return true
		})
	}
	// The settings the compose file relies on; guards the scan above.
	for _, want := range []string{"store", "http.addr", "data.dir", "cluster.addr", "cluster.advertised-addr", "log.level"} {
		if !slices.Contains(names, want) {
			t.Fatalf("cmd/checkin does not register flag %q (found %v)", want, names)
		}
	}
	return names
}

func TestCompose(t *testing.T) {
	f := loadCompose(t)
	known := knownEnv(t)

	var scyllas, apps []string
	var migrate string
	for name, s := range f.Services {
		switch {
		case strings.HasPrefix(s.Image, "scylladb/scylla"):
			scyllas = append(scyllas, name)
		case s.Build != nil && slices.Equal(s.command(t), []string{"migrate"}):
			migrate = name
		case s.Build != nil:
			apps = append(apps, name)
		}
	}
	slices.Sort(scyllas)
	slices.Sort(apps)

	t.Run("scylla ring", func(t *testing.T) {
		if len(scyllas) != 3 {
			t.Fatalf("scylla services = %v, want 3", scyllas)
		}
		for _, name := range scyllas {
			s := f.Services[name]
			if tag := s.Image[strings.LastIndex(s.Image, ":")+1:]; !strings.Contains(s.Image, ":") || tag == "latest" {
				t.Errorf("%s: image %q is not pinned to a version", name, s.Image)
			}
			if s.Healthcheck == nil || !strings.Contains(strings.Join(s.Healthcheck.Test, " "), "cqlsh") && !strings.Contains(strings.Join(s.Healthcheck.Test, " "), "nodetool") {
				t.Errorf("%s: no cqlsh/nodetool healthcheck", name)
			}
			cmd := strings.Join(s.command(t), " ")
			for _, want := range []string{"--smp 1", "--overprovisioned 1", "--memory ", "--developer-mode 1"} {
				if !strings.Contains(cmd, want) {
					t.Errorf("%s: command %q lacks %q", name, cmd, want)
				}
			}
			m := regexp.MustCompile(`--seeds[= ](\S+)`).FindStringSubmatch(cmd)
			if m == nil {
				t.Errorf("%s: no --seeds", name)
				continue
			}
			for _, seed := range strings.Split(m[1], ",") {
				if !slices.Contains(scyllas, seed) {
					t.Errorf("%s: seed %q is not a scylla service", name, seed)
				}
			}
		}
	})

	t.Run("migrate", func(t *testing.T) {
		if migrate == "" {
			t.Fatal("no one-shot service running `checkin migrate`")
		}
		s := f.Services[migrate]
		if s.Restart != "no" {
			t.Errorf("%s: restart %q, want \"no\" (a one-shot job)", migrate, s.Restart)
		}
		for _, sc := range scyllas {
			if s.DependsOn[sc].Condition != "service_healthy" {
				t.Errorf("%s does not wait for %s to be healthy", migrate, sc)
			}
		}
		r := s.Environment["CHECKIN_SCYLLA_REPLICATION"]
		if !strings.Contains(r, "NetworkTopologyStrategy") || !regexp.MustCompile(`'datacenter1'\s*:\s*'?3`).MatchString(r) {
			t.Errorf("%s: replication %q, want NetworkTopologyStrategy with datacenter1: 3", migrate, r)
		}
	})

	t.Run("app nodes", func(t *testing.T) {
		if len(apps) == 0 || !slices.Contains(apps, "checkin-1") {
			t.Fatalf("app services = %v, want checkin-1", apps)
		}
		for _, name := range apps {
			s := f.Services[name]
			if s.Build.Context != "." || filepath.Base(s.Build.Dockerfile) != "Dockerfile" {
				t.Errorf("%s: build %+v, want the repository's Dockerfile", name, *s.Build)
			}
			if s.Environment["CHECKIN_STORE"] != "scylla" {
				t.Errorf("%s: CHECKIN_STORE=%q, want scylla", name, s.Environment["CHECKIN_STORE"])
			}
			for _, sc := range scyllas {
				if s.DependsOn[sc].Condition != "service_healthy" {
					t.Errorf("%s does not wait for %s to be healthy", name, sc)
				}
			}
			if s.DependsOn[migrate].Condition != "service_completed_successfully" {
				t.Errorf("%s does not wait for %s to complete", name, migrate)
			}
			var hosts []string
			for _, h := range strings.Split(s.Environment["CHECKIN_SCYLLA_HOSTS"], ",") {
				host, port, err := net.SplitHostPort(strings.TrimSpace(h))
				if err != nil || port != "9042" {
					t.Errorf("%s: scylla host %q, want host:9042", name, h)
				}
				hosts = append(hosts, host)
			}
			slices.Sort(hosts)
			if !slices.Equal(hosts, scyllas) {
				t.Errorf("%s: CHECKIN_SCYLLA_HOSTS names %v, want every scylla service %v", name, hosts, scyllas)
			}
		}
	})

	t.Run("cluster", func(t *testing.T) {
		if len(apps) < 3 {
			t.Errorf("app services = %v, want several (3 or more) in one cluster", apps)
		}
		var etcds []string
		for name, s := range f.Services {
			if strings.Contains(s.Image, "/etcd:") {
				etcds = append(etcds, name)
				if s.Healthcheck == nil || !strings.Contains(strings.Join(s.Healthcheck.Test, " "), "endpoint health") {
					t.Errorf("%s: no etcd health check", name)
				}
			}
		}
		if len(etcds) == 0 {
			t.Fatal("no etcd service for the nodes' membership")
		}
		advertised := map[string]string{}
		for _, name := range apps {
			env := f.Services[name].Environment
			if env["CHECKIN_CLUSTER_PROVIDER"] != "etcd" {
				t.Errorf("%s: CHECKIN_CLUSTER_PROVIDER=%q, want etcd", name, env["CHECKIN_CLUSTER_PROVIDER"])
			}
			for _, e := range strings.Split(env["CHECKIN_CLUSTER_ETCD_ENDPOINTS"], ",") {
				host, port, err := net.SplitHostPort(strings.TrimSpace(e))
				if err != nil || port != "2379" || !slices.Contains(etcds, host) {
					t.Errorf("%s: etcd endpoint %q, want an etcd service at :2379 (%v)", name, e, etcds)
				}
				if f.Services[name].DependsOn[host].Condition != "service_healthy" {
					t.Errorf("%s does not wait for %s to be healthy", name, host)
				}
			}
			_, port, err := net.SplitHostPort(env["CHECKIN_CLUSTER_ADDR"])
			if err != nil {
				t.Errorf("%s: CHECKIN_CLUSTER_ADDR %q: %v", name, env["CHECKIN_CLUSTER_ADDR"], err)
			}
			adv := env["CHECKIN_CLUSTER_ADVERTISED_ADDR"]
			if want := net.JoinHostPort(name, port); adv != want {
				t.Errorf("%s: CHECKIN_CLUSTER_ADVERTISED_ADDR=%q, want %q (its own name, its cluster port)", name, adv, want)
			}
			if other, dup := advertised[adv]; dup {
				t.Errorf("%s and %s advertise the same address %q", other, name, adv)
			}
			advertised[adv] = name
		}
	})

	t.Run("environment", func(t *testing.T) {
		for name, s := range f.Services {
			var fs flag.FlagSet
			var c Config
			c.RegisterFlags(&fs)
			for k := range s.Environment {
				if strings.HasPrefix(k, "CHECKIN_") && !known[k] {
					t.Errorf("%s: %s is not read by checkin (no flag has it as env twin)", name, k)
				}
			}
			if err := parseWithEnv(&fs, nil, s.Environment); err != nil {
				t.Errorf("%s: scylla settings do not parse: %v", name, err)
			} else if err := c.Validate(); err != nil {
				t.Errorf("%s: scylla settings are invalid: %v", name, err)
			}
		}
	})

	t.Run("load balancer", func(t *testing.T) {
		var lb string
		for name, s := range f.Services {
			if strings.HasPrefix(s.Image, "nginx") {
				lb = name
			}
		}
		if lb == "" {
			t.Fatal("no nginx service")
		}
		s := f.Services[lb]
		if len(s.Configs) != 1 || !strings.HasPrefix(s.Configs[0].Target, "/etc/nginx/") {
			t.Fatalf("%s: configs %+v, want one nginx config file", lb, s.Configs)
		}
		conf := f.Configs[s.Configs[0].Source].Content
		if conf == "" {
			t.Fatalf("config %q has no inline content", s.Configs[0].Source)
		}
		listen := regexp.MustCompile(`listen\s+(\d+);`).FindStringSubmatch(conf)
		if listen == nil || len(s.Ports) != 1 || !strings.HasSuffix(s.Ports[0], ":"+listen[1]) {
			t.Errorf("%s publishes %v but nginx listens on %v", lb, s.Ports, listen)
		}
		block := regexp.MustCompile(`upstream\s+\w+\s*\{([^}]*)\}`).FindStringSubmatch(conf)
		if block == nil {
			t.Fatal("nginx config has no upstream block")
		}
		var upstream []string
		for _, m := range regexp.MustCompile(`server\s+([^\s;]+)`).FindAllStringSubmatch(block[1], -1) {
			upstream = append(upstream, m[1])
		}
		var want []string
		for _, name := range apps {
			_, port, err := net.SplitHostPort(f.Services[name].Environment["CHECKIN_HTTP_ADDR"])
			if err != nil {
				t.Errorf("%s: CHECKIN_HTTP_ADDR %q: %v", name, f.Services[name].Environment["CHECKIN_HTTP_ADDR"], err)
			}
			want = append(want, net.JoinHostPort(name, port))
			if s.DependsOn[name].Condition == "" {
				t.Errorf("%s does not depend on %s", lb, name)
			}
		}
		slices.Sort(upstream)
		if !slices.Equal(upstream, want) {
			t.Errorf("nginx upstream %v, want every app node at its HTTP port %v", upstream, want)
		}
		if strings.Contains(conf, "$") && regexp.MustCompile(`[^$]\$[a-z]`).MatchString(conf) {
			t.Errorf("nginx config uses $var: compose interpolates it; write $$var")
		}
	})

	t.Run("docker compose config", func(t *testing.T) {
		if _, err := exec.LookPath("docker"); err != nil {
			t.Skip("no docker CLI")
		}
		if err := exec.Command("docker", "compose", "version").Run(); err != nil {
			t.Skip("the docker compose plugin is not installed")
		}
		out, err := exec.Command("docker", "compose", "-f", filepath.Join(repoRoot, "docker-compose.yml"), "config", "-q").CombinedOutput()
		if err != nil {
			t.Fatalf("docker compose config: %v\n%s", err, out)
		}
	})
}

// TestDockerfile: the image is a static build of ./cmd/checkin, run as a
// non-root user, and sets only environment variables the binary reads.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	known := knownEnv(t)
	var froms, users []string
	var build, entrypoint string
	var copied []string
	sc := bufio.NewScanner(strings.NewReader(strings.ReplaceAll(string(b), "\\\n", " ")))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			froms = append(froms, fields[1])
		case "USER":
			users = append(users, fields[1])
		case "RUN":
			if strings.Contains(sc.Text(), "go build") {
				build = sc.Text()
			}
		case "COPY":
			if strings.HasPrefix(fields[1], "--from=") {
				copied = append(copied, fields[len(fields)-1])
			}
		case "ENTRYPOINT":
			entrypoint = sc.Text()
		case "ENV":
			for _, kv := range fields[1:] {
				if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CHECKIN_") && !known[k] {
					t.Errorf("ENV %s is not read by checkin", k)
				}
			}
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:") {
		t.Errorf("stages %v, want a golang builder and a runtime stage", froms)
	}
	if last := froms[len(froms)-1]; !strings.Contains(last, "distroless/static") && !strings.HasPrefix(last, "alpine") {
		t.Errorf("runtime image %s, want distroless/static or alpine", last)
	}
	if !strings.Contains(string(b), "CGO_ENABLED=0") {
		t.Error("the build is not static (CGO_ENABLED=0)")
	}
	if !strings.Contains(build, "./cmd/checkin") {
		t.Errorf("go build %q does not build ./cmd/checkin", build)
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "cmd", "checkin", "main.go")); err != nil {
		t.Errorf("./cmd/checkin: %v", err)
	}
	if len(users) == 0 || users[len(users)-1] == "root" || strings.HasPrefix(users[len(users)-1], "0") {
		t.Errorf("USER %v, want a non-root user last", users)
	}
	if len(copied) == 0 || !strings.Contains(entrypoint, copied[len(copied)-1]) {
		t.Errorf("ENTRYPOINT %q does not run the copied binary %v", entrypoint, copied)
	}

	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ignore), "\n") {
		p := strings.TrimPrefix(strings.TrimSpace(line), "/")
		for _, needed := range []string{"go.mod", "go.sum", "cmd", "persistence"} {
			if ok, _ := filepath.Match(p, needed); ok {
				t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", line, needed)
			}
		}
	}
}
