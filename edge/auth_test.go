package edge

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	fileKey1 = "file-key-one-0123456789"
	fileKey2 = "file-key-two-0123456789"
	fileKey3 = "file-key-three-012345678"
	envKey   = "env.key_with~all+chars/="
)

func writeKeys(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// request sends method path with the Authorization header auth (none when
// empty) and returns the answer.
func request(t *testing.T, c *http.Client, method, url, auth, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return send(t, c, req)
}

// TestAPIKeys drives a node that requires API keys over real HTTP: /v1
// answers 401 without a known key and serves with any key of the file or
// the environment, the operations endpoints stay open, and a reload swaps
// the file's keys (a bad file keeps the keys in use).
func TestAPIKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	writeKeys(t, file, "# keys of the API clients\n"+fileKey1+"\n\n  "+fileKey2+"  \n")
	keys, err := LoadAPIKeys(file, envKey)
	if err != nil || keys.Len() != 3 {
		t.Fatalf("LoadAPIKeys = %d keys, %v; want 3", keys.Len(), err)
	}
	ts := newTestServerWithKeys(t, nil, nil, keys)
	base := ts.serve(t)
	c := newClient(t)

	refused := func(t *testing.T, res response) {
		t.Helper()
		if res.status != http.StatusUnauthorized {
			t.Fatalf("status = %d, want 401; body %s", res.status, res.body)
		}
		if b := res.errBody(t); b.Error.Code != "unauthorized" {
			t.Errorf("code = %q, want unauthorized", b.Error.Code)
		}
		if got := res.header.Get("WWW-Authenticate"); got != `Bearer realm="checkin"` {
			t.Errorf("WWW-Authenticate = %q", got)
		}
		if res.header.Get("X-Request-Id") == "" {
			t.Error("a refused request has no X-Request-Id")
		}
	}
	tests := []struct {
		name   string
		method string
		path   string
		auth   string
		body   string
		status int // 401: refused
	}{
		{name: "no header", method: http.MethodGet, path: "/v1/users/alice", status: 401},
		{name: "unknown key", method: http.MethodGet, path: "/v1/users/alice", auth: "Bearer not-a-key-0123456789", status: 401},
		{name: "a known key's prefix", method: http.MethodGet, path: "/v1/users/alice", auth: "Bearer " + fileKey1[:len(fileKey1)-1], status: 401},
		{name: "key without scheme", method: http.MethodGet, path: "/v1/users/alice", auth: fileKey1, status: 401},
		{name: "basic scheme", method: http.MethodGet, path: "/v1/users/alice", auth: "Basic " + fileKey1, status: 401},
		{name: "scheme without key", method: http.MethodGet, path: "/v1/users/alice", auth: "Bearer ", status: 401},
		{name: "unknown route under /v1 is refused before routing", method: http.MethodGet, path: "/v1/nothing", status: 401},
		{name: "write without a key", method: http.MethodPost, path: "/v1/users", body: `{"id":"bob","name":"Bob"}`, status: 401},
		{name: "first file key", method: http.MethodPost, path: "/v1/users", auth: "Bearer " + fileKey1, body: `{"id":"alice","name":"Alice"}`, status: 201},
		{name: "second file key, scheme in lower case", method: http.MethodGet, path: "/v1/users/alice", auth: "bearer " + fileKey2, status: 200},
		{name: "environment key", method: http.MethodGet, path: "/v1/users/alice", auth: "Bearer " + envKey, status: 200},
		{name: "healthz stays open", method: http.MethodGet, path: "/healthz", status: 200},
		{name: "readyz stays open", method: http.MethodGet, path: "/readyz", status: 200},
		{name: "metrics stay open", method: http.MethodGet, path: "/metrics", status: 200},
		{name: "openapi stays open", method: http.MethodGet, path: "/openapi.yaml", status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := request(t, c, tt.method, base+tt.path, tt.auth, tt.body)
			if tt.status == http.StatusUnauthorized {
				refused(t, res)
				return
			}
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", res.status, tt.status, res.body)
			}
		})
	}
	if m := request(t, c, http.MethodGet, base+"/metrics", "", ""); !strings.Contains(string(m.body), `status="401"`) {
		t.Error("refused requests are not counted in checkin_http_requests_total")
	}

	t.Run("reload swaps the file's keys", func(t *testing.T) {
		writeKeys(t, file, fileKey3+"\n")
		if n, err := keys.Reload(); err != nil || n != 2 {
			t.Fatalf("ReloadAPIKeys = %d, %v; want 2 keys (file + environment)", n, err)
		}
		refused(t, request(t, c, http.MethodGet, base+"/v1/users/alice", "Bearer "+fileKey1, ""))
		for _, key := range []string{fileKey3, envKey} {
			if res := request(t, c, http.MethodGet, base+"/v1/users/alice", "Bearer "+key, ""); res.status != 200 {
				t.Errorf("after reload, a current key got %d", res.status)
			}
		}
	})
	t.Run("a bad file keeps the keys in use", func(t *testing.T) {
		writeKeys(t, file, "# nothing here\n")
		if n, err := keys.Reload(); err == nil || n != 2 {
			t.Fatalf("ReloadAPIKeys of a file without keys = %d, %v; want an error and the 2 keys in use", n, err)
		}
		if res := request(t, c, http.MethodGet, base+"/v1/users/alice", "Bearer "+fileKey3, ""); res.status != 200 {
			t.Errorf("after a failed reload, a key in use got %d", res.status)
		}
	})
}

// Without keys the API is open: a request without Authorization is served.
func TestAPIKeysOff(t *testing.T) {
	keys, err := LoadAPIKeys("", "")
	if err != nil || keys.Len() != 0 {
		t.Fatalf("LoadAPIKeys of nothing = %d keys, %v", keys.Len(), err)
	}
	ts := newTestServerWithKeys(t, nil, nil, keys)
	base := ts.serve(t)
	res := request(t, newClient(t), http.MethodPost, base+"/v1/users", "", `{"id":"alice","name":"Alice"}`)
	if res.status != http.StatusCreated {
		t.Fatalf("status = %d, want 201; body %s", res.status, res.body)
	}
	if _, err := keys.Reload(); err == nil {
		t.Error("reloading without a keys file reported no error")
	}
}

// Keys that are easy to guess or not bearer tokens stop the node at start,
// and the error names where the key is without printing it.
func TestAPIKeysRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		file string // contents; "-" for a file that does not exist
		env  string
		want string
	}{
		{name: "short key in the file", file: "# ok\n" + fileKey1 + "\nshort-key\n", want: "line 3"},
		{name: "key with a space", file: "a key with spaces 0123456789\n", want: "line 1"},
		{name: "key with a quote", file: `quote"key-0123456789` + "\n", want: "line 1"},
		{name: "file without keys", file: "# no keys yet\n\n", want: "holds no key"},
		{name: "missing file", file: "-", want: "http.api-keys-file"},
		{name: "short key in the environment", env: envKey + ",tiny", want: EnvAPIKeys + ": key 2"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := ""
			if tt.file != "" {
				file = filepath.Join(dir, "keys"+string(rune('a'+i)))
				if tt.file != "-" {
					writeKeys(t, file, tt.file)
				}
			}
			k, err := LoadAPIKeys(file, tt.env)
			if err == nil {
				t.Fatalf("LoadAPIKeys accepted it (%d keys)", k.Len())
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			for _, secret := range []string{"short-key", "tiny", "spaces 0123456789", "quote"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q prints the key", err)
				}
			}
		})
	}
}
