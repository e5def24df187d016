package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/trainyard/trainyard/trainrun"
)

const (
	unitFile   = "../../deploy/trainyard-station.service"
	envFile    = "../../deploy/trainyard-station.env"
	stationDoc = "../../docs/station.md"
)

// unit is a systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// parseUnit reads the subset of systemd's unit syntax the deploy files use:
// [Section] headers, Key=Value lines, comments starting with # or ;.
func parseUnit(data []byte) (unit, error) {
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		case strings.HasSuffix(line, "\\"):
			return nil, fmt.Errorf("line %d: continuation lines are not expected", n)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				return nil, fmt.Errorf("line %d: %q is not Key=Value in a section", n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u, sc.Err()
}

// parseEnvFile reads an EnvironmentFile as systemd does for the forms the
// example uses: KEY=VALUE, a value optionally in double quotes, comments.
func parseEnvFile(data []byte) (map[string]string, []string, error) {
	env := map[string]string{}
	var order []string
	valid := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !valid.MatchString(k) {
			return nil, nil, fmt.Errorf("line %d: %q is not NAME=VALUE", n, line)
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		} else if strings.ContainsAny(v, " \t\"'\\$`") {
			// sh would split or expand it; systemd would not.
			return nil, nil, fmt.Errorf("line %d: %s: quote a value with spaces or shell characters so sh and systemd read it alike", n, k)
		}
		if _, dup := env[k]; dup {
			return nil, nil, fmt.Errorf("line %d: %s set twice", n, k)
		}
		env[k] = v
		order = append(order, k)
	}
	return env, order, sc.Err()
}

// expandExec expands $VAR and ${VAR} in an ExecStart= line as systemd does:
// a bare $VAR word splits at whitespace (zero or more words), ${VAR} is one.
func expandExec(line string, env map[string]string) []string {
	var out []string
	for _, w := range strings.Fields(line) {
		if strings.HasPrefix(w, "$") && !strings.HasPrefix(w, "${") {
			out = append(out, strings.Fields(env[w[1:]])...)
			continue
		}
		out = append(out, os.Expand(w, func(k string) string { return env[k] }))
	}
	return out
}

// envVarsRead is every TRAINYARD_* (and legacy) name the program's non-test
// sources mention in a string literal.
func envVarsRead(t *testing.T) string {
	t.Helper()
	var all strings.Builder
	err := filepath.WalkDir("../..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		all.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all.String()
}

// flagsByEnv maps each environment variable a flag's usage names to the flag.
func flagsByEnv(c *cobra.Command) map[string]*pflag.Flag {
	re := regexp.MustCompile(`\b(TRAINYARD_[A-Z0-9_]+|STATION_ID|PRIVATE_KEY_PATH|DOCKER_HOST)\b`)
	m := map[string]*pflag.Flag{}
	visit := func(f *pflag.Flag) {
		for _, name := range re.FindAllString(f.Usage, -1) {
			if _, ok := m[name]; !ok {
				m[name] = f
			}
		}
	}
	c.LocalFlags().VisitAll(visit)
	c.InheritedFlags().VisitAll(visit)
	return m
}

func readDeploy(t *testing.T) (unit, map[string]string, []string) {
	t.Helper()
	ub, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	u, err := parseUnit(ub)
	if err != nil {
		t.Fatalf("%s: %v", unitFile, err)
	}
	eb, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	env, order, err := parseEnvFile(eb)
	if err != nil {
		t.Fatalf("%s: %v", envFile, err)
	}
	return u, env, order
}

// TestDeployUnitRunsRealServe: the unit's ExecStart, with the example
// environment file expanded into it, is `trainyard station serve` with
// flags the CLI has and values they accept; the settings serve refuses to
// start without are all there.
func TestDeployUnitRunsRealServe(t *testing.T) {
	u, env, _ := readDeploy(t)
	if got := u.get("Service", "EnvironmentFile"); got != "/etc/trainyard/station.env" {
		t.Errorf("EnvironmentFile=%q, want /etc/trainyard/station.env (docs/station.md installs the example there)", got)
	}
	exec := u["Service"]["ExecStart"]
	if len(exec) != 1 {
		t.Fatalf("want one ExecStart=, have %q", exec)
	}
	words := expandExec(exec[0], env)
	if len(words) < 3 || words[0] != "/usr/local/bin/trainyard" {
		t.Fatalf("ExecStart=%q: want /usr/local/bin/trainyard station serve ...", exec[0])
	}
	root := NewRoot()
	serve, rest, err := root.Find(words[1:])
	if err != nil || serve.CommandPath() != "trainyard station serve" {
		t.Fatalf("ExecStart=%q: runs %v, not trainyard station serve (%v)", exec[0], serve.CommandPath(), err)
	}
	checkArgs(t, root, unitFile, strings.Join(words, " "), words[1:])
	if err := serve.ParseFlags(rest); err != nil {
		t.Errorf("ExecStart=%q with SERVE_ARGS=%q: %v", exec[0], env["SERVE_ARGS"], err)
	}
	if args := serve.Flags().Args(); len(args) > 0 {
		t.Errorf("ExecStart passes arguments %q; serve takes none", args)
	}
	// Each required setting comes from the environment file or a flag.
	has := func(flag, envName string) bool { return serve.Flags().Changed(flag) || env[envName] != "" }
	for flag, envName := range map[string]string{"id": "TRAINYARD_STATION_ID", "key": "TRAINYARD_STATION_KEY", "network": "TRAINYARD_NETWORK"} {
		if !has(flag, envName) {
			t.Errorf("serve needs --%s: neither %s nor SERVE_ARGS sets it", flag, envName)
		}
	}
	if !has("data", "TRAINYARD_STATION_DATA") && !serve.Flags().Changed("no-data") {
		t.Errorf("serve needs --data or --no-data: neither TRAINYARD_STATION_DATA nor SERVE_ARGS sets one")
	}
}

// TestDeployEnvFileNamesRealVariables: every TRAINYARD_* name in the
// environment file is one the program reads, and every value parses as its
// flag's value would.
func TestDeployEnvFileNamesRealVariables(t *testing.T) {
	_, env, order := readDeploy(t)
	known := knownEnv(t)
	serve, _, err := NewRoot().Find([]string{"station", "serve"})
	if err != nil {
		t.Fatal(err)
	}
	byEnv := flagsByEnv(serve)
	for _, k := range order {
		switch {
		case k == "SERVE_ARGS", k == "DOCKER_CONFIG":
			continue // the unit's ExecStart; the registry client's config
		case !strings.HasPrefix(k, "TRAINYARD_"):
			t.Errorf("%s: %s is neither a TRAINYARD_* setting nor one the unit uses", envFile, k)
			continue
		case !known(k):
			t.Errorf("%s: %s is not read by trainyard (no source or flag usage names it)", envFile, k)
			continue
		}
		f := byEnv[k]
		if f == nil {
			continue
		}
		v := env[k]
		if f.Value.Type() == "bool" {
			// The CLI reads these as "1" for on; anything else is off.
			if v != "0" && v != "1" {
				t.Errorf("%s: %s=%q: use 1 or 0", envFile, k, v)
			}
			continue
		}
		if err := f.Value.Set(v); err != nil {
			t.Errorf("%s: %s=%q is not a valid --%s: %v", envFile, k, v, f.Name, err)
		}
	}
	if v, ok := env["DOCKER_CONFIG"]; ok && !strings.HasPrefix(v, "/etc/") {
		t.Errorf("DOCKER_CONFIG=%q: the unit hides /root and /home (ProtectHome=yes); keep it under /etc", v)
	}
}

// TestDeployUnitStopsAfterGrace: systemd waits longer than serve's grace
// before SIGKILL, and signals only the station, which lets the train finish.
func TestDeployUnitStopsAfterGrace(t *testing.T) {
	u, env, _ := readDeploy(t)
	serve, _, err := NewRoot().Find([]string{"station", "serve"})
	if err != nil {
		t.Fatal(err)
	}
	f := serve.Flags().Lookup("grace")
	if f == nil {
		t.Fatal("station serve has no --grace")
	}
	grace, err := time.ParseDuration(f.DefValue)
	if err != nil {
		t.Fatal(err)
	}
	if v := env["TRAINYARD_STATION_GRACE"]; v != "" {
		if grace, err = time.ParseDuration(v); err != nil {
			t.Fatalf("TRAINYARD_STATION_GRACE=%q: %v", v, err)
		}
	}
	stop, err := systemdSeconds(u.get("Service", "TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	// The killed train still has to be reaped (runc waits up to 10s),
	// its results filesystem unmounted and the stop recorded.
	if stop < grace+20*time.Second {
		t.Errorf("TimeoutStopSec=%s, want at least grace (%s) + 20s", stop, grace)
	}
	for key, want := range map[string]string{"KillSignal": "SIGTERM", "KillMode": "mixed", "Restart": "on-failure"} {
		if got := u.get("Service", key); got != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
}

// systemdSeconds parses a systemd time span: "90", "90s", "1min 30s", "2m".
func systemdSeconds(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("not set")
	}
	var total time.Duration
	re := regexp.MustCompile(`^(\d+)\s*(us|ms|s|sec|m|min|h|hr)?$`)
	for _, part := range strings.Fields(s) {
		m := re.FindStringSubmatch(part)
		if m == nil {
			return 0, fmt.Errorf("%q: not a time span this test knows", s)
		}
		var n time.Duration
		fmt.Sscan(m[1], &n)
		unit := map[string]time.Duration{"": time.Second, "s": time.Second, "sec": time.Second, "m": time.Minute, "min": time.Minute,
			"h": time.Hour, "hr": time.Hour, "ms": time.Millisecond, "us": time.Microsecond}[m[2]]
		total += n * unit
	}
	return total, nil
}

// TestDeployUnitWritablePaths: everything the station writes is writable
// under ProtectSystem=strict (the state and runtime directories), runc's
// state dir is the runtime directory, and nothing the station reads sits
// where ProtectHome=yes hides it.
func TestDeployUnitWritablePaths(t *testing.T) {
	u, env, _ := readDeploy(t)
	if got := u.get("Service", "ProtectSystem"); got != "strict" {
		t.Fatalf("ProtectSystem=%q, want strict (this test checks the writable paths it leaves)", got)
	}
	state := "/var/lib/" + u.get("Service", "StateDirectory")
	runtime := "/run/" + u.get("Service", "RuntimeDirectory")
	if runtime != trainrun.DefaultRuncStateDir {
		t.Errorf("RuntimeDirectory gives %s, but runc's state is in %s", runtime, trainrun.DefaultRuncStateDir)
	}
	if u.get("Service", "RuntimeDirectoryPreserve") != "yes" {
		t.Error("RuntimeDirectoryPreserve=yes is needed: the next start must find what a killed station left in runc's state")
	}
	writable := append([]string{state, runtime}, u["Service"]["ReadWritePaths"]...)
	under := func(p string, dirs []string) bool {
		for _, d := range dirs {
			if p == d || strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") {
				return true
			}
		}
		return false
	}
	for _, k := range []string{"TRAINYARD_TRUST_DIR", "TRAINYARD_STATION_STATE", "TRAINYARD_STATION_WORK", "TRAINYARD_STATION_TRAIN_LOGS", "TRAINYARD_STATION_DB", "TRAINYARD_STATE_HOME"} {
		if p := env[k]; p != "" && !under(p, writable) {
			t.Errorf("%s=%s is read-only to the service (ProtectSystem=strict); writable: %v", k, p, writable)
		}
	}
	if env["TRAINYARD_TRUST_DIR"] == "" {
		t.Error("TRAINYARD_TRUST_DIR unset: the default, relative to the working directory, must then be writable; set it in the state directory")
	}
	if wd := u.get("Service", "WorkingDirectory"); wd != "" && !under(wd, writable) {
		t.Errorf("WorkingDirectory=%s is read-only to the service", wd)
	}
	hidden := []string{"/home", "/root", "/run/user"}
	for _, k := range []string{"TRAINYARD_STATION_KEY", "TRAINYARD_STATION_DATA", "TRAINYARD_TRUST_ROOT", "DOCKER_CONFIG"} {
		if p := env[k]; p != "" && (!filepath.IsAbs(p) || under(p, hidden)) {
			t.Errorf("%s=%s: want an absolute path outside %v (ProtectHome=yes; the working directory is not the operator's)", k, p, hidden)
		}
	}
	// As root the CLI's default state directory for an id lies in the
	// unit's state directory, where operator commands find it with --id.
	if os.Geteuid() == 0 {
		t.Setenv("TRAINYARD_STATE_HOME", "")
		f := stationFlags{id: env["TRAINYARD_STATION_ID"]}
		if got := f.state(); filepath.Dir(got) != state {
			t.Errorf("as root the station keeps its state in %s, outside the unit's StateDirectory %s", got, state)
		}
	}
}

// TestDeployUnitVerifies runs systemd-analyze verify on the unit in a
// scratch root: every directive must be known and every value valid (it
// warns, and this test fails, on a misspelt key or value).
func TestDeployUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	root := t.TempDir()
	for _, d := range []string{"usr/local/bin", "etc/systemd/system", "usr/lib/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "usr/local/bin/trainyard"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/systemd/system/trainyard-station.service"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"sysinit.target", "basic.target", "shutdown.target", "multi-user.target", "network-online.target", "local-fs.target"} {
		if err := os.WriteFile(filepath.Join(root, "usr/lib/systemd/system", target), []byte("[Unit]\nDescription="+target+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(analyze, "verify", "--man=no", "--root="+root, "trainyard-station.service").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// docCommands returns the trainyard command lines in shell text: in every
// command of a line (split at ; | & and quotes, for sh -c '...'), the words
// after sudo, env, VAR=value assignments and cron fields, when the first
// other word is trainyard or a path to it.
func docCommands(text string) [][]string {
	assign := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=(.*)$`)
	cron := regexp.MustCompile(`^[0-9*/,-]+$`)
	isTrainyard := func(w string) bool { return w == "trainyard" || strings.HasSuffix(w, "bin/trainyard") }
	var out [][]string
	text = strings.ReplaceAll(text, "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		if i := strings.Index(line, " # "); i >= 0 {
			line = line[:i]
		}
		for _, seg := range strings.FieldsFunc(line, func(r rune) bool { return strings.ContainsRune(";|&'()", r) }) {
			w := strings.Fields(seg)
			for len(w) > 0 {
				if m := assign.FindStringSubmatch(w[0]); m != nil {
					if strings.HasSuffix(m[1], "bin/trainyard") { // ExecStart=/usr/local/bin/trainyard ..., not User=trainyard
						w[0] = m[1]
						break
					}
					w = w[1:]
					continue
				}
				if w[0] == "sudo" || w[0] == "env" || cron.MatchString(w[0]) {
					w = w[1:]
					continue
				}
				break
			}
			if len(w) > 0 && isTrainyard(w[0]) {
				out = append(out, w)
			}
		}
	}
	return out
}

// knownEnv is every environment variable trainyard reads: named in a
// string literal of the program's sources or in a flag's usage.
func knownEnv(t *testing.T) func(string) bool {
	t.Helper()
	src := envVarsRead(t)
	usages := map[string]bool{}
	re := regexp.MustCompile(`TRAINYARD_[A-Z0-9_]*[A-Z0-9]`)
	walk(NewRoot(), func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			for _, n := range re.FindAllString(f.Usage, -1) {
				usages[n] = true
			}
		})
	})
	return func(name string) bool { return usages[name] || strings.Contains(src, `"`+name+`"`) }
}

// TestStationDocCommandsAreReal: every trainyard command line in
// docs/station.md (code blocks and inline code) names a real command and
// only its flags, and every TRAINYARD_* variable it names is read.
func TestStationDocCommandsAreReal(t *testing.T) {
	b, err := os.ReadFile(stationDoc)
	if err != nil {
		t.Fatal(err)
	}
	root := NewRoot()
	var code []string
	inBlock := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock {
			code = append(code, line)
		}
	}
	blocks := docCommands(strings.Join(code, "\n"))
	for _, w := range blocks {
		checkArgs(t, root, stationDoc, strings.Join(w, " "), w[1:])
	}
	inline := 0
	for _, m := range regexp.MustCompile("`([^`\\n]+)`").FindAllStringSubmatch(string(b), -1) {
		for _, w := range docCommands(m[1]) {
			// A command group named in prose (`trainyard trust`) is fine.
			if c, rest, err := root.Find(w[1:]); err == nil && len(rest) == 0 && c.HasAvailableSubCommands() {
				continue
			}
			checkArgs(t, root, stationDoc, strings.Join(w, " "), w[1:])
			inline++
		}
	}
	if inline < 10 || len(blocks) < 20 {
		t.Fatalf("%s: found %d inline and %d block commands; the parser is broken", stationDoc, inline, len(blocks))
	}
	known := knownEnv(t)
	for _, name := range regexp.MustCompile(`TRAINYARD_[A-Z0-9_]*[A-Z0-9]`).FindAllString(string(b), -1) {
		if !known(name) {
			t.Errorf("%s names %s, which trainyard does not read", stationDoc, name)
		}
	}
}

// TestDocCommandsParser: the extraction above finds commands where a shell
// would run them, and not trainyard named as an argument or in prose.
func TestDocCommandsParser(t *testing.T) {
	got := docCommands(`sudo install -m 0755 bin/trainyard /usr/local/bin/trainyard
the trainyard trust directory
trainyard: tuf: an error line
ExecStart=/usr/local/bin/trainyard trust refresh --watch
User=trainyard
17 * * * *  TRAINYARD_TRUST_REPO=r /usr/local/bin/trainyard trust refresh
sudo sh -c 'set -a; . /etc/trainyard/station.env; trainyard station inspect REF'; echo "exit $?"
trainyard keys generate a && trainyard keys show a.pub | jq . # trainyard not this`)
	var lines []string
	for _, w := range got {
		lines = append(lines, strings.Join(w, " "))
	}
	want := []string{"/usr/local/bin/trainyard trust refresh --watch", "/usr/local/bin/trainyard trust refresh",
		"trainyard station inspect REF", "trainyard keys generate a", "trainyard keys show a.pub"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("docCommands:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestDeployUnitKeepsTrainsReadable: a umask stricter than 022 reaches the
// train's unpacked root filesystem and runc's mount points, and a train
// running as a non-root user cannot reach its own entrypoint.
func TestDeployUnitKeepsTrainsReadable(t *testing.T) {
	u, _, _ := readDeploy(t)
	v := u.get("Service", "UMask")
	if v == "" {
		return // systemd's default, 0022
	}
	var m uint32
	if _, err := fmt.Sscanf(v, "%o", &m); err != nil {
		t.Fatalf("UMask=%q: %v", v, err)
	}
	if m&0o055 != 0 {
		t.Errorf("UMask=%s takes read or search from group or others: trains that run as a non-root user break", v)
	}
}
