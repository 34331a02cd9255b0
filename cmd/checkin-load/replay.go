package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// row is one check-in of a Gowalla-format file: user id, UTC time,
// latitude, longitude, location id, tab-separated.
type row struct {
	User string
	Time time.Time
	Lat  float64
	Lon  float64
	Loc  string
	Line int // 1-based line in the file
}

// checkinID derives the checkin id from the row: gw-<user>-<unix
// seconds>-<location> (unix milliseconds for a time within a second, so
// that two rows of a user at a location in one second are two checkins),
// or gwh- and a hash of those when that is longer than the API's 64
// characters. A re-run (and an exact duplicate row) sends the same id, so
// the server answers 200 instead of storing a second checkin.
func (r row) checkinID() string {
	t := r.Time.Unix()
	if r.Time.Truncate(time.Second) != r.Time {
		t = r.Time.UnixMilli()
	}
	id := "gw-" + r.User + "-" + strconv.FormatInt(t, 10) + "-" + r.Loc
	if len(id) <= 64 {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "gwh-" + hex.EncodeToString(sum[:16])
}

// parseCheckins reads a check-in file. Empty lines are skipped; any other
// malformed line is an error naming it.
func parseCheckins(r io.Reader) ([]row, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var rows []row
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimRight(sc.Bytes(), "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f := strings.Split(string(line), "\t")
		if len(f) != 5 {
			return nil, fmt.Errorf("line %d: %d fields, want 5 (user, time, lat, lon, location)", n, len(f))
		}
		rw := row{User: f[0], Loc: f[4], Line: n}
		if !validID(rw.User) {
			return nil, fmt.Errorf("line %d: user id %q is not 1-64 characters of A-Z, a-z, 0-9, '_' and '-'", n, rw.User)
		}
		if !validID(rw.Loc) {
			return nil, fmt.Errorf("line %d: location id %q is not 1-64 characters of A-Z, a-z, 0-9, '_' and '-'", n, rw.Loc)
		}
		var err error
		if rw.Time, err = time.Parse(time.RFC3339, f[1]); err != nil {
			return nil, fmt.Errorf("line %d: time %q: %w", n, f[1], err)
		}
		rw.Time = rw.Time.UTC()
		if rw.Lat, err = strconv.ParseFloat(f[2], 64); err != nil || rw.Lat < -90 || rw.Lat > 90 {
			return nil, fmt.Errorf("line %d: latitude %q is not a number in [-90, 90]", n, f[2])
		}
		if rw.Lon, err = strconv.ParseFloat(f[3], 64); err != nil || rw.Lon < -180 || rw.Lon > 180 {
			return nil, fmt.Errorf("line %d: longitude %q is not a number in [-180, 180]", n, f[3])
		}
		rows = append(rows, rw)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return rows, nil
}

// sortByTime orders rows by time; rows of the same second keep their file
// order, so the order is the same on every run.
func sortByTime(rows []row) {
	slices.SortStableFunc(rows, func(a, b row) int { return a.Time.Compare(b.Time) })
}

// parseVenues reads location id → venue name from a TSV of id, name, lat,
// lon. Lines without a usable name are skipped.
func parseVenues(r io.Reader) (map[string]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	names := map[string]string{}
	for n := 1; sc.Scan(); n++ {
		f := strings.Split(strings.TrimRight(sc.Text(), "\r"), "\t")
		if len(f) < 2 {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			return nil, fmt.Errorf("line %d: %d fields, want location id, name, lat, lon", n, len(f))
		}
		if name := cleanName(f[1]); name != "" && validID(f[0]) {
			names[f[0]] = name
		}
	}
	return names, sc.Err()
}

// cleanName trims a name and cuts it to the API's 256 bytes on a rune
// boundary; invalid UTF-8 gives "".
func cleanName(s string) string {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return ""
	}
	for len(s) > 256 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return strings.TrimSpace(s)
}

// replayData is a parsed replay: rows in time order and what to create
// before them.
type replayData struct {
	rows       []row
	users      []string // in order of first check-in
	locations  []replayLocation
	duplicates int // rows that repeat an earlier row's checkin id
}

type replayLocation struct {
	ID       string
	Name     string
	Lat, Lon float64
}

// loadReplay reads the check-in file (and the venues file when given) and
// prepares the replay. prefix is added to every user and location id.
func loadReplay(path, venuesPath, prefix string) (*replayData, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := parseCheckins(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var names map[string]string
	if venuesPath != "" {
		vf, err := os.Open(venuesPath)
		if err != nil {
			return nil, err
		}
		defer vf.Close()
		if names, err = parseVenues(vf); err != nil {
			return nil, fmt.Errorf("%s: %w", venuesPath, err)
		}
	}
	d, err := prepareReplay(rows, names, prefix)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// prepareReplay sorts rows by time and lists the users and locations they
// need. A location gets the coordinates of its first check-in in time
// order and its venue name, or "Gowalla spot <id>".
func prepareReplay(rows []row, names map[string]string, prefix string) (*replayData, error) {
	sortByTime(rows)
	d := &replayData{rows: rows}
	seenUser := map[string]bool{}
	seenLoc := map[string]bool{}
	seenID := map[string]bool{}
	for i := range rows {
		r := &rows[i]
		r.User, r.Loc = prefix+r.User, prefix+r.Loc
		if !validID(r.User) || !validID(r.Loc) {
			return nil, fmt.Errorf("line %d: with prefix %q the user or location id is longer than 64 characters", r.Line, prefix)
		}
		if !seenUser[r.User] {
			seenUser[r.User] = true
			d.users = append(d.users, r.User)
		}
		if !seenLoc[r.Loc] {
			seenLoc[r.Loc] = true
			name := names[strings.TrimPrefix(r.Loc, prefix)]
			if name == "" {
				name = "Gowalla spot " + r.Loc
			}
			d.locations = append(d.locations, replayLocation{ID: r.Loc, Name: name, Lat: r.Lat, Lon: r.Lon})
		}
		id := r.checkinID()
		if seenID[id] {
			d.duplicates++
		}
		seenID[id] = true
	}
	if len(rows) == 0 {
		return nil, errors.New("no check-ins in the file")
	}
	return d, nil
}
