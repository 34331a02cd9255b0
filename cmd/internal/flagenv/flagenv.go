// Package flagenv gives every command-line flag an environment twin:
// CHECKIN_ + the flag name in upper case with '.' and '-' turned into '_'
// (http.addr → CHECKIN_HTTP_ADDR). A flag given on the command line wins
// over its environment variable, which wins over the default.
package flagenv

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Prefix starts every environment variable name.
const Prefix = "CHECKIN_"

// EnvName returns the environment twin of a flag name.
func EnvName(flagName string) string {
	return Prefix + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(flagName))
}

// Parse parses args into fs, then fills every flag not set on the command
// line from its environment variable (looked up with getenv).
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, serr)
			}
		}
	})
	return err
}

// Usage prints a usage text that lists each flag with its environment
// variable and default.
func Usage(fs *flag.FlagSet, w io.Writer, head string) func() {
	return func() {
		fmt.Fprint(w, head)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(w, "  --%s (env %s, default %q)\n      %s\n", f.Name, EnvName(f.Name), f.DefValue, f.Usage)
		})
	}
}

// Getenv is os.Getenv, for callers that want the process environment.
var Getenv = os.Getenv
