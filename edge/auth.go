package edge

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/gofiber/fiber/v2"
)

// EnvAPIKeys names the environment variable that holds API keys, separated
// by commas or white space. Keys are never flags, so they never show up in
// --help output, process listings or logs; a file (Config.APIKeysFile) is
// the other source.
const EnvAPIKeys = "CHECKIN_HTTP_API_KEYS"

// MinAPIKeyLen is the shortest API key a node accepts at start: shorter
// ones are easy to guess.
const MinAPIKeyLen = 16

// errUnauthorized answers a /v1 request without a known API key.
var errUnauthorized = &apiError{status: http.StatusUnauthorized, code: "unauthorized",
	msg: "missing or unknown API key: send the header Authorization: Bearer YOUR_KEY"}

// APIKeys holds the accepted API keys by their SHA-256 digest, so a look-up
// takes the same time whatever prefix of a key a guess shares, and the
// keys themselves are not kept. Without keys, authentication is off.
type APIKeys struct {
	file string // re-read by reload; "" when the keys come from the environment only
	env  string // the environment's keys, as read at start
	set  atomic.Pointer[map[[sha256.Size]byte]struct{}]
}

// LoadAPIKeys reads the keys of env (the value of EnvAPIKeys) and of file
// (if not empty). Authentication is on when there is at least one; a file
// that is set but holds none is an error, as is a key that is too short or
// not a bearer token.
func LoadAPIKeys(file, env string) (*APIKeys, error) {
	k := &APIKeys{file: file, env: env}
	set, err := k.read()
	if err != nil {
		return nil, err
	}
	if len(set) > 0 {
		k.set.Store(&set)
	}
	return k, nil
}

// Reload re-reads the file, so keys can be added and retired without a
// restart (the node does on SIGHUP). On an error the keys in use stay. It
// returns how many keys are in use afterwards.
func (k *APIKeys) Reload() (int, error) {
	if k.file == "" {
		return k.Len(), errors.New("no http.api-keys-file to re-read")
	}
	set, err := k.read()
	if err != nil {
		return k.Len(), err
	}
	k.set.Store(&set)
	return len(set), nil
}

// Len is the number of keys in use; 0: authentication is off.
func (k *APIKeys) Len() int {
	if k == nil {
		return 0
	}
	if s := k.set.Load(); s != nil {
		return len(*s)
	}
	return 0
}

// read parses the environment's keys and the file's: one key per line, with
// blank lines and lines starting with # ignored. Errors name the source and
// line, never the key.
func (k *APIKeys) read() (map[[sha256.Size]byte]struct{}, error) {
	set := map[[sha256.Size]byte]struct{}{}
	add := func(key, where string) error {
		if len(key) < MinAPIKeyLen {
			return fmt.Errorf("%s: an API key must be at least %d characters", where, MinAPIKeyLen)
		}
		if !bearerToken(key) {
			return fmt.Errorf("%s: an API key may hold only letters, digits and -._~+/=", where)
		}
		set[sha256.Sum256([]byte(key))] = struct{}{}
		return nil
	}
	for i, key := range strings.FieldsFunc(k.env, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' }) {
		if err := add(key, fmt.Sprintf("%s: key %d", EnvAPIKeys, i+1)); err != nil {
			return nil, err
		}
	}
	if k.file == "" {
		return set, nil
	}
	b, err := os.ReadFile(k.file)
	if err != nil {
		return nil, fmt.Errorf("http.api-keys-file: %w", err)
	}
	n := 0
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := add(line, fmt.Sprintf("http.api-keys-file %s: line %d", k.file, i+1)); err != nil {
			return nil, err
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("http.api-keys-file %s holds no key: every request would be refused (leave the setting empty to serve without keys)", k.file)
	}
	return set, nil
}

// bearerToken tells whether s is made of the characters of an RFC 6750
// bearer token.
func bearerToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~+/=", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// authenticate lets a request through when authentication is off or the
// request carries a known key as "Authorization: Bearer <key>".
// bearerScheme starts the Authorization header of a request with a key.
const bearerScheme = "bearer "

func (s *Server) authenticate(c *fiber.Ctx) error {
	if s.keys == nil {
		return c.Next()
	}
	set := s.keys.set.Load()
	if set == nil {
		return c.Next()
	}
	h := c.Request().Header.Peek(fiber.HeaderAuthorization)
	if len(h) > len(bearerScheme) && strings.EqualFold(string(h[:len(bearerScheme)]), bearerScheme) {
		if _, ok := (*set)[sha256.Sum256(h[len(bearerScheme):])]; ok {
			return c.Next()
		}
	}
	c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="checkin"`)
	return errUnauthorized
}
