package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/checkin/checkin/edge"
	"github.com/checkin/checkin/persistence"
	"github.com/checkin/checkin/persistence/pebble"
	"github.com/checkin/checkin/persistence/scylla"
)

// naive is the "attempt 1" design: the handler does everything itself, on
// the request's goroutine. A checkin is one WriteCheckins call of one
// checkin, which syncs the store before it returns; the current location
// is read from the store on every request. No actors, no batching, no
// caches.
type naive struct {
	store   persistence.Store
	timeout time.Duration
	log     *zap.Logger
}

func openNaive(cfg config, log *zap.Logger) (*naive, error) {
	n := &naive{timeout: cfg.RequestTimeout, log: log}
	switch cfg.Store {
	case "scylla":
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Scylla.ConnectTimeout+cfg.Scylla.Timeout)
		defer cancel()
		st, err := scylla.Open(ctx, cfg.Scylla, log.Named("scylla"))
		if err != nil {
			return nil, err
		}
		n.store = st
	default:
		st, err := pebble.Open(cfg.DataDir, pebble.WithLogger(log.Named("pebble")), pebble.WithIOUring(cfg.IOUring))
		if err != nil {
			return nil, err
		}
		n.store = st
	}
	return n, nil
}

func (n *naive) close() error { return n.store.Close() }

func (n *naive) routes(app *fiber.App) {
	v1 := app.Group("/v1")
	v1.Post("/users", n.createUser)
	v1.Get("/users/:id", n.getUser)
	v1.Post("/locations", n.createLocation)
	v1.Get("/locations/:id", n.getLocation)
	v1.Post("/users/:id/checkins", n.checkin)
	v1.Get("/users/:id/checkins", n.listCheckins)
	v1.Get("/users/:id/location", n.currentLocation)
}

const (
	maxFuture  = 5 * time.Minute
	timeLayout = "2006-01-02T15:04:05.000Z07:00"
)

type userJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
}

type locationJSON struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	Lat       float64 `json:"lat"`
	Lon       float64 `json:"lon"`
	CreatedAt string  `json:"created_at"`
}

type checkinJSON struct {
	ID         string `json:"id"`
	UserID     string `json:"user_id"`
	LocationID string `json:"location_id"`
	Timestamp  string `json:"timestamp"`
}

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func toLocationJSON(l persistence.Location) locationJSON {
	return locationJSON{ID: l.ID, Name: l.Name, Lat: l.Lat, Lon: l.Lon, CreatedAt: formatTime(l.CreatedAt)}
}

func toCheckinJSON(c persistence.Checkin) checkinJSON {
	return checkinJSON{ID: c.ID, UserID: c.UserID, LocationID: c.LocationID, Timestamp: formatTime(c.Timestamp)}
}

func (n *naive) ctx(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), n.timeout)
}

func (n *naive) createUser(c *fiber.Ctx) error {
	var req struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = uuid.Must(uuid.NewV7()).String()
	}
	if err := checkID("id", req.ID); err != nil {
		return err
	}
	if strings.TrimSpace(req.Name) == "" || len(req.Name) > 256 {
		return badRequest("invalid_name", "name must be 1 to 256 bytes")
	}
	u := persistence.User{ID: req.ID, Name: req.Name, CreatedAt: persistence.Millis(time.Now())}
	ctx, cancel := n.ctx(c)
	defer cancel()
	if err := n.store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, persistence.ErrConflict) {
			return &apiError{http.StatusConflict, "user_exists", "user " + u.ID + " already exists"}
		}
		return err
	}
	return c.Status(http.StatusCreated).JSON(userJSON{u.ID, u.Name, formatTime(u.CreatedAt)})
}

func (n *naive) getUser(c *fiber.Ctx) error {
	id := c.Params("id")
	if err := checkID("user id", id); err != nil {
		return err
	}
	ctx, cancel := n.ctx(c)
	defer cancel()
	u, err := n.store.GetUser(ctx, id)
	if err != nil {
		return userErr(id, err)
	}
	return c.JSON(userJSON{u.ID, u.Name, formatTime(u.CreatedAt)})
}

func userErr(id string, err error) error {
	if errors.Is(err, persistence.ErrNotFound) {
		return &apiError{http.StatusNotFound, "user_not_found", "user " + id + " does not exist"}
	}
	return err
}

func locationErr(id string, err error) error {
	if errors.Is(err, persistence.ErrNotFound) {
		return &apiError{http.StatusNotFound, "location_not_found", "location " + id + " does not exist"}
	}
	return err
}

func (n *naive) createLocation(c *fiber.Ctx) error {
	var req struct {
		ID   string   `json:"id"`
		Name string   `json:"name"`
		Lat  *float64 `json:"lat"`
		Lon  *float64 `json:"lon"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = uuid.Must(uuid.NewV7()).String()
	}
	if err := checkID("id", req.ID); err != nil {
		return err
	}
	if strings.TrimSpace(req.Name) == "" || len(req.Name) > 256 {
		return badRequest("invalid_name", "name must be 1 to 256 bytes")
	}
	if req.Lat == nil || req.Lon == nil || *req.Lat < -90 || *req.Lat > 90 || *req.Lon < -180 || *req.Lon > 180 {
		return badRequest("invalid_coordinates", "lat must be in [-90, 90] and lon in [-180, 180]")
	}
	l := persistence.Location{ID: req.ID, Name: req.Name, Lat: *req.Lat, Lon: *req.Lon, CreatedAt: persistence.Millis(time.Now())}
	ctx, cancel := n.ctx(c)
	defer cancel()
	if err := n.store.CreateLocation(ctx, l); err != nil {
		if errors.Is(err, persistence.ErrConflict) {
			return &apiError{http.StatusConflict, "location_exists", "location " + l.ID + " already exists"}
		}
		return err
	}
	return c.Status(http.StatusCreated).JSON(toLocationJSON(l))
}

func (n *naive) getLocation(c *fiber.Ctx) error {
	id := c.Params("id")
	if err := checkID("location id", id); err != nil {
		return err
	}
	ctx, cancel := n.ctx(c)
	defer cancel()
	l, err := n.store.GetLocation(ctx, id)
	if err != nil {
		return locationErr(id, err)
	}
	return c.JSON(toLocationJSON(l))
}

// checkin validates, looks the user, the location and the id up in the
// store, and writes the one checkin synchronously.
func (n *naive) checkin(c *fiber.Ctx) error {
	userID := c.Params("id")
	if err := checkID("user id", userID); err != nil {
		return err
	}
	var req struct {
		ID         string  `json:"id"`
		LocationID string  `json:"location_id"`
		Timestamp  *string `json:"timestamp"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	now := time.Now()
	ci := persistence.Checkin{ID: req.ID, UserID: userID, LocationID: req.LocationID, Timestamp: persistence.Millis(now)}
	if ci.ID == "" {
		ci.ID = uuid.Must(uuid.NewV7()).String()
	}
	if err := checkID("id", ci.ID); err != nil {
		return err
	}
	if err := checkID("location_id", ci.LocationID); err != nil {
		return err
	}
	if req.Timestamp != nil {
		t, err := parseTime("timestamp", *req.Timestamp)
		if err != nil {
			return err
		}
		if t.After(now.Add(maxFuture)) {
			return badRequest("timestamp_in_future", "timestamp must not be more than 5m0s in the future")
		}
		ci.Timestamp = t
	}
	ctx, cancel := n.ctx(c)
	defer cancel()
	if _, err := n.store.GetUser(ctx, userID); err != nil {
		return userErr(userID, err)
	}
	if _, err := n.store.GetLocation(ctx, ci.LocationID); err != nil {
		return locationErr(ci.LocationID, err)
	}
	switch old, err := n.store.GetCheckin(ctx, userID, ci.ID); {
	case err == nil:
		if old.LocationID != ci.LocationID || req.Timestamp != nil && !old.Timestamp.Equal(ci.Timestamp) {
			return &apiError{http.StatusConflict, "checkin_conflict", "checkin " + ci.ID + " exists with other content"}
		}
		return c.JSON(toCheckinJSON(old))
	case !errors.Is(err, persistence.ErrNotFound):
		return err
	}
	if err := n.store.WriteCheckins(ctx, []persistence.Checkin{ci}); err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(toCheckinJSON(ci))
}

func (n *naive) currentLocation(c *fiber.Ctx) error {
	userID := c.Params("id")
	if err := checkID("user id", userID); err != nil {
		return err
	}
	ctx, cancel := n.ctx(c)
	defer cancel()
	cur, err := n.store.CurrentLocation(ctx, userID)
	if errors.Is(err, persistence.ErrNotFound) {
		if _, uerr := n.store.GetUser(ctx, userID); uerr != nil {
			return userErr(userID, uerr)
		}
		return &apiError{http.StatusNotFound, "no_checkins", "user " + userID + " has no checkins"}
	}
	if err != nil {
		return err
	}
	l, err := n.store.GetLocation(ctx, cur.LocationID)
	if err != nil {
		return err
	}
	return c.JSON(struct {
		UserID     string       `json:"user_id"`
		LocationID string       `json:"location_id"`
		Timestamp  string       `json:"timestamp"`
		CheckinID  string       `json:"checkin_id"`
		Location   locationJSON `json:"location"`
	}{userID, cur.LocationID, formatTime(cur.Timestamp), cur.ID, toLocationJSON(l)})
}

func (n *naive) listCheckins(c *fiber.Ctx) error {
	userID := c.Params("id")
	if err := checkID("user id", userID); err != nil {
		return err
	}
	q := persistence.Query{UserID: userID, From: time.Unix(0, 0).UTC(), To: persistence.Millis(time.Now().Add(maxFuture)).Add(time.Millisecond), Limit: 50}
	var err error
	if v := c.Query("location_id"); v != "" {
		if err := checkID("location_id", v); err != nil {
			return err
		}
		q.LocationID = v
	}
	if v := c.Query("from"); v != "" {
		if q.From, err = parseTime("from", v); err != nil {
			return err
		}
	}
	if v := c.Query("to"); v != "" {
		if q.To, err = parseTime("to", v); err != nil {
			return err
		}
	}
	if !q.From.Before(q.To) {
		return badRequest("invalid_range", "from must be before to")
	}
	if v := c.Query("limit"); v != "" {
		if q.Limit, err = strconv.Atoi(v); err != nil || q.Limit < 1 || q.Limit > 1000 {
			return badRequest("invalid_limit", "limit must be an integer from 1 to 1000")
		}
	}
	switch c.Query("order") {
	case "", "newest":
	case "oldest":
		q.Order = persistence.OldestFirst
	default:
		return badRequest("invalid_order", "order must be newest or oldest")
	}
	if v := c.Query("cursor"); v != "" {
		if q.After, err = decodeCursor(v); err != nil {
			return err
		}
	}
	ctx, cancel := n.ctx(c)
	defer cancel()
	if _, err := n.store.GetUser(ctx, userID); err != nil {
		return userErr(userID, err)
	}
	page, err := n.store.ListCheckins(ctx, q)
	if err != nil {
		return err
	}
	out := struct {
		Checkins   []checkinJSON `json:"checkins"`
		NextCursor *string       `json:"next_cursor"`
	}{Checkins: make([]checkinJSON, len(page.Checkins))}
	for i, ci := range page.Checkins {
		out.Checkins[i] = toCheckinJSON(ci)
	}
	if page.Next != nil {
		cur := encodeCursor(*page.Next)
		out.NextCursor = &cur
	}
	return c.JSON(out)
}

// A cursor is the position of the last checkin of a page: unix ms and id,
// base64url-encoded.
func encodeCursor(p persistence.Position) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(p.Timestamp.UnixMilli()))
	return base64.RawURLEncoding.EncodeToString(append(b, p.CheckinID...))
}

func decodeCursor(s string) (*persistence.Position, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 9 || !edge.ValidID(string(b[8:])) {
		return nil, badRequest("invalid_cursor", "cursor is not one this API returned")
	}
	return &persistence.Position{Timestamp: time.UnixMilli(int64(binary.BigEndian.Uint64(b))).UTC(), CheckinID: string(b[8:])}, nil
}
