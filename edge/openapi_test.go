package edge

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// openAPIDoc is the part of the document the tests check.
type openAPIDoc struct {
	OpenAPI    string                               `yaml:"openapi"`
	Paths      map[string]map[string]yaml.Node      `yaml:"paths"`
	Components map[string]map[string]map[string]any `yaml:"components"`
}

type openAPIOperation struct {
	Parameters []struct {
		Ref  string `yaml:"$ref"`
		Name string `yaml:"name"`
		In   string `yaml:"in"`
	} `yaml:"parameters"`
	Responses map[string]any `yaml:"responses"`
	Security  *[]any         `yaml:"security"` // nil: the document's
}

var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := yaml.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Fatalf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	if len(doc.Paths) == 0 {
		t.Fatal("openapi.yaml has no paths")
	}
	return doc
}

// operations returns "METHOD /path" of every documented operation.
func (d openAPIDoc) operations(t *testing.T) map[string]openAPIOperation {
	t.Helper()
	ops := map[string]openAPIOperation{}
	for path, item := range d.Paths {
		for key, node := range item {
			if !slices.Contains(openAPIMethods, key) {
				continue // summary, parameters, ...
			}
			var op openAPIOperation
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", key, path, err)
			}
			ops[strings.ToUpper(key)+" "+path] = op
		}
	}
	return ops
}

var fiberParam = regexp.MustCompile(`:([A-Za-z0-9_]+)\??`)

// openAPIPath turns a Fiber route path into OpenAPI's form: /users/:id → /users/{id}.
func openAPIPath(p string) string { return fiberParam.ReplaceAllString(p, "{$1}") }

// TestOpenAPIRoutes checks that the document describes exactly the routes
// the app registers, method for method.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	documented := doc.operations(t)
	s := newTestServer(t, nil, nil)

	registered := map[string]bool{}
	for _, r := range s.App().GetRoutes(true) {
		if strings.ContainsAny(r.Path, "*+") {
			t.Errorf("route %s %s has a wildcard; teach this test how to document it", r.Method, r.Path)
		}
		registered[r.Method+" "+openAPIPath(r.Path)] = true
	}
	if len(registered) < 10 {
		t.Fatalf("only %d routes registered: %v", len(registered), registered)
	}
	for route := range registered {
		if _, ok := documented[route]; ok {
			continue
		}
		// Fiber registers HEAD next to every GET; a documented GET implies it.
		method, path, _ := strings.Cut(route, " ")
		if _, ok := documented["GET "+path]; ok && method == "HEAD" && registered["GET "+path] {
			continue
		}
		t.Errorf("route %s is registered but not documented in openapi.yaml", route)
	}
	for op := range documented {
		if !registered[op] {
			t.Errorf("operation %s is documented but not registered", op)
		}
	}
}

// TestOpenAPIOperations checks what every operation must have: its path
// parameters declared, and responses for success and for the statuses any
// request can get.
func TestOpenAPIOperations(t *testing.T) {
	doc := loadOpenAPI(t)
	params := doc.Components["parameters"]
	pathParam := regexp.MustCompile(`\{([^}]+)\}`)
	for name, op := range doc.operations(t) {
		declared := map[string]bool{}
		for _, p := range op.Parameters {
			pname, in := p.Name, p.In
			if p.Ref != "" {
				c, ok := params[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
				if !ok {
					t.Errorf("%s: parameter %s does not resolve", name, p.Ref)
					continue
				}
				pname, _ = c["name"].(string)
				in, _ = c["in"].(string)
			}
			if in == "path" {
				declared[pname] = true
			}
		}
		_, path, _ := strings.Cut(name, " ")
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			if !declared[m[1]] {
				t.Errorf("%s: path parameter %q is not declared", name, m[1])
			}
		}
		ok := false
		for code := range op.Responses {
			if strings.HasPrefix(code, "2") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s: no 2xx response", name)
		}
		if _, ok := op.Responses["503"]; !ok {
			t.Errorf("%s: no 503 response (every request can be refused as overloaded)", name)
		}
		// With API keys, the edge refuses every /v1 request without one
		// (authenticate is the /v1 group's middleware) and nothing else.
		_, has401 := op.Responses["401"]
		if v1 := strings.HasPrefix(path, "/v1/"); v1 != has401 {
			t.Errorf("%s: 401 response documented = %v, want %v (only /v1 needs an API key)", name, has401, v1)
		}
		if open := op.Security != nil && len(*op.Security) == 0; open == strings.HasPrefix(path, "/v1/") {
			t.Errorf("%s: security: [] = %v; only the routes outside /v1 need no key", name, open)
		}
	}
}

// TestOpenAPIRefs checks that every $ref points at something in the document.
func TestOpenAPIRefs(t *testing.T) {
	var root yaml.Node
	if err := yaml.Unmarshal(OpenAPI(), &root); err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := root.Decode(&tree); err != nil {
		t.Fatal(err)
	}
	n := 0
	var walk func(*yaml.Node)
	walk = func(node *yaml.Node) {
		for i := 0; i+1 < len(node.Content); i++ {
			if node.Kind == yaml.MappingNode && i%2 == 0 && node.Content[i].Value == "$ref" {
				n++
				ref := node.Content[i+1].Value
				if !resolves(tree, ref) {
					t.Errorf("line %d: $ref %q does not resolve", node.Content[i+1].Line, ref)
				}
			}
		}
		for _, c := range node.Content {
			walk(c)
		}
	}
	walk(&root)
	if n == 0 {
		t.Fatal("no $ref found; the walk is broken")
	}
}

func resolves(tree map[string]any, ref string) bool {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	var cur any = tree
	for _, part := range strings.Split(p, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")]; !ok {
			return false
		}
	}
	return true
}

// TestOpenAPIErrorCodes checks that the ErrorCode enum lists exactly the
// error codes the edge and the actors produce.
func TestOpenAPIErrorCodes(t *testing.T) {
	doc := loadOpenAPI(t)
	schema := doc.Components["schemas"]["ErrorCode"]
	rawEnum, _ := schema["enum"].([]any)
	enum := map[string]bool{}
	for _, v := range rawEnum {
		s, _ := v.(string)
		enum[s] = true
	}
	if len(enum) == 0 {
		t.Fatal("components.schemas.ErrorCode has no enum")
	}

	produced, problems, err := errorCodesInSource(".", filepath.Join("..", "actors"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	// Each way of producing a code must have been found, or the scanner is
	// broken and the check below proves nothing.
	for _, code := range []string{
		"invalid_json",         // badRequest("...")
		"location_not_found",   // notFound("...")
		"location_exists",      // &apiError{code: "..."}
		"not_found",            // &apiError{status, "...", msg}
		"route_not_found",      // fiberCode's return "..."
		"user_not_found",       // actors.CodeUserNotFound = "..."
		"too_many_connections", // closingResponse(status, "...", msg)
	} {
		if !produced[code] {
			t.Errorf("scanner did not find %q; it no longer understands the source", code)
		}
	}
	for _, code := range sortedKeys(produced) {
		if !enum[code] {
			t.Errorf("error code %q is produced but missing from ErrorCode in openapi.yaml", code)
		}
	}
	for _, code := range sortedKeys(enum) {
		if !produced[code] {
			t.Errorf("ErrorCode %q is documented but nothing produces it", code)
		}
	}
	for _, code := range sortedKeys(produced) {
		if !strings.Contains(string(OpenAPI()), "`"+code+"`") {
			t.Errorf("error code %q is not explained anywhere in openapi.yaml (no `%s`)", code, code)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// errorCodesInSource returns every error code string literal in the
// non-test Go files of edge and actors: the first argument of badRequest
// and notFound, the code of an apiError literal (keyed or positional), the
// results of fiberCode, the second argument of actors' newError, and the
// Code* constants. A code given any other way (other than the known
// pass-throughs) is an error, so a new way of spelling codes cannot slip
// past the scan.
func errorCodesInSource(dirs ...string) (codes map[string]bool, problems []string, err error) {
	codes = map[string]bool{}
	fset := token.NewFileSet()
	bad := func(pos token.Pos, format string, args ...any) {
		problems = append(problems, fset.Position(pos).String()+": "+fmt.Sprintf(format, args...))
	}
	lit := func(e ast.Expr, where string) {
		switch e := e.(type) {
		case *ast.BasicLit:
			s, err := strconv.Unquote(e.Value)
			if e.Kind != token.STRING || err != nil {
				bad(e.Pos(), "code %s is not a string", e.Value)
				return
			}
			codes[s] = true
		case *ast.Ident:
			// Code* constants are scanned where declared; code is the
			// parameter of the constructors badRequest and notFound.
			if !strings.HasPrefix(e.Name, "Code") && e.Name != "code" {
				bad(e.Pos(), "%s code given as %s; use a literal or a Code constant", where, e.Name)
			}
		case *ast.SelectorExpr:
			// actors.CodeX, or the Code field of an actors.Error passed on.
			if !strings.HasPrefix(e.Sel.Name, "Code") {
				bad(e.Pos(), "%s code given as %s; use a literal or a Code constant", where, e.Sel.Name)
			}
		case *ast.CallExpr:
			// fiberCode's results are scanned in its body.
			if fn, ok := e.Fun.(*ast.Ident); !ok || fn.Name != "fiberCode" {
				bad(e.Pos(), "%s code is computed by a call other than fiberCode", where)
			}
		default:
			bad(e.Pos(), "%s code is not a literal or a Code constant", where)
		}
	}
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			return nil, nil, err
		}
		if len(files) == 0 {
			return nil, nil, fmt.Errorf("no Go files in %s", dir)
		}
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				return nil, nil, err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CallExpr:
					fn, ok := n.Fun.(*ast.Ident)
					if !ok {
						return true
					}
					switch {
					case (fn.Name == "badRequest" || fn.Name == "notFound") && len(n.Args) == 2:
						lit(n.Args[0], fn.Name)
					case fn.Name == "newError" && len(n.Args) == 3:
						lit(n.Args[1], fn.Name)
					case fn.Name == "closingResponse" && len(n.Args) == 3:
						lit(n.Args[1], fn.Name)
					}
				case *ast.CompositeLit:
					typ, ok := n.Type.(*ast.Ident)
					if !ok || typ.Name != "apiError" {
						return true
					}
					for i, e := range n.Elts {
						if kv, ok := e.(*ast.KeyValueExpr); ok {
							if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "code" {
								lit(kv.Value, "apiError")
							}
						} else if i == 1 {
							lit(e, "apiError")
						}
					}
				case *ast.FuncDecl:
					if n.Name.Name != "fiberCode" {
						return true
					}
					ast.Inspect(n.Body, func(m ast.Node) bool {
						if r, ok := m.(*ast.ReturnStmt); ok && len(r.Results) == 1 {
							lit(r.Results[0], "fiberCode")
						}
						return true
					})
					return false
				case *ast.ValueSpec:
					for i, id := range n.Names {
						if strings.HasPrefix(id.Name, "Code") && i < len(n.Values) {
							lit(n.Values[i], "const")
						}
					}
				}
				return true
			})
		}
	}
	return codes, problems, nil
}

// TestErrorCodeScanner checks the scanner on source written for it, so a
// code added in any of the recognised forms is known to be found, and one
// spelled another way is reported rather than missed.
func TestErrorCodeScanner(t *testing.T) {
	dir := t.TempDir()
	src := `package x

const (
	CodeA = "code_const"
	other = "not_a_code"
)

func f(code string, e *Error) {
	_ = badRequest("code_bad_request", "m")
	_ = notFound("code_not_found", "m")
	_ = &apiError{status: 400, code: "code_keyed", msg: "m"}
	_ = &apiError{400, "code_positional", "m"}
	_ = newError(ErrX, "code_new_error", "m")
	_ = newError(ErrX, CodeA, "m")
	_ = &apiError{code: e.Code}
	_ = &apiError{code: fiberCode(400)}
	_ = badRequest(code, "m")
	_ = badRequest(other, "m")
	_ = &apiError{code: strings.ToLower("X")}
}

func fiberCode(int) string { return "code_fiber" }
`
	if err := os.WriteFile(filepath.Join(dir, "x.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x_test.go"), []byte("package x\nvar _ = badRequest(\"code_in_test\", \"m\")\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	codes, problems, err := errorCodesInSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"code_bad_request", "code_const", "code_fiber", "code_keyed", "code_new_error", "code_not_found", "code_positional"}
	if got := sortedKeys(codes); !slices.Equal(got, want) {
		t.Errorf("codes = %v, want %v", got, want)
	}
	if len(problems) != 2 || !strings.Contains(problems[0], "given as other") || !strings.Contains(problems[1], "call other than fiberCode") {
		t.Errorf("problems = %q, want the code given as other and the one computed by a call", problems)
	}
}
