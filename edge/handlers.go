package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/checkin/checkin/persistence"
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

type currentJSON struct {
	UserID     string       `json:"user_id"`
	LocationID string       `json:"location_id"`
	Timestamp  string       `json:"timestamp"`
	CheckinID  string       `json:"checkin_id"`
	Location   locationJSON `json:"location"`
}

type pageJSON struct {
	Checkins   []checkinJSON `json:"checkins"`
	NextCursor *string       `json:"next_cursor"`
}

func toUserJSON(u persistence.User) userJSON {
	return userJSON{ID: u.ID, Name: u.Name, CreatedAt: formatTime(u.CreatedAt)}
}

func toLocationJSON(l persistence.Location) locationJSON {
	return locationJSON{ID: l.ID, Name: l.Name, Lat: l.Lat, Lon: l.Lon, CreatedAt: formatTime(l.CreatedAt)}
}

func toCheckinJSON(c persistence.Checkin) checkinJSON {
	return checkinJSON{ID: c.ID, UserID: c.UserID, LocationID: c.LocationID, Timestamp: formatTime(c.Timestamp)}
}

// newID returns a time-ordered id (UUIDv7).
func newID() string { return uuid.Must(uuid.NewV7()).String() }

// pathID returns the :id path parameter, validated. field names it in the
// error ("user id") and is passed whole, so nothing is built per request.
func pathID(c *fiber.Ctx, field string) (string, error) {
	id := c.Params("id")
	return id, checkID(field, id)
}

func (s *Server) createUser(c *fiber.Ctx) error {
	var req struct {
		ID   *string `json:"id"`
		Name *string `json:"name"`
	}
	body, err := requestBody(c)
	if err != nil {
		return err
	}
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	u := persistence.User{ID: newID(), CreatedAt: persistence.Millis(s.now())}
	if req.ID != nil {
		if err := checkID("id", *req.ID); err != nil {
			return err
		}
		u.ID = *req.ID
	}
	if req.Name == nil {
		return badRequest("invalid_name", "name is required")
	}
	if err := checkName(*req.Name); err != nil {
		return err
	}
	u.Name = strings.TrimSpace(*req.Name)
	ctx, cancel := s.ctx(c)
	defer cancel()
	g := s.records.gen.Load()
	created, err := s.grains.CreateUser(ctx, u)
	if err != nil {
		return err
	}
	s.records.putUser(g, created)
	return c.Status(http.StatusCreated).JSON(toUserJSON(created))
}

func (s *Server) getUser(c *fiber.Ctx) error {
	id, err := pathID(c, "user id")
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	u, err := s.records.user(ctx, id)
	if err != nil {
		return userErr(id, err)
	}
	return c.JSON(toUserJSON(u))
}

// userExists returns nil or the API error for a user that does not exist.
func (s *Server) userExists(ctx context.Context, id string) error {
	_, err := s.records.user(ctx, id)
	return userErr(id, err)
}

func userErr(id string, err error) error {
	if errors.Is(err, persistence.ErrNotFound) {
		return notFound("user_not_found", "user "+id+" does not exist")
	}
	return err
}

// updateUser changes a user's name. The id and creation time never change.
func (s *Server) updateUser(c *fiber.Ctx) error {
	id, err := pathID(c, "user id")
	if err != nil {
		return err
	}
	var req struct {
		Name *string `json:"name"`
	}
	body, err := requestBody(c)
	if err != nil {
		return err
	}
	if err := decodePatch(body, &req); err != nil {
		return err
	}
	var p persistence.UserPatch
	if req.Name != nil {
		if err := checkName(*req.Name); err != nil {
			return err
		}
		p.Name = ptr(strings.TrimSpace(*req.Name))
	}
	if p.Empty() {
		return badRequest("empty_update", "the body must name a field to change: name")
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	u, err := s.store.UpdateUser(ctx, id, p)
	if err != nil {
		s.changedUnlessRefused(KindUser, id, err)
		return userErr(id, err)
	}
	s.changed(KindUser, id)
	return c.JSON(toUserJSON(u))
}

// listUsers pages through every user (an order that is the same on every
// call; the embedded store's is by id).
func (s *Server) listUsers(c *fiber.Ctx) error {
	return listPage(s, c, KindUser, "users", s.store.ListUsers, toUserJSON, func(u persistence.User) string { return u.ID })
}

// listLocations is listUsers for locations.
func (s *Server) listLocations(c *fiber.Ctx) error {
	return listPage(s, c, KindLocation, "locations", s.store.ListLocations, toLocationJSON, func(l persistence.Location) string { return l.ID })
}

// listPage answers one page of a listing: {"<field>":[...],"next_cursor":...}.
func listPage[T, J any](s *Server, c *fiber.Ctx, kind RecordKind, field string,
	list func(ctx context.Context, after string, limit int) ([]T, bool, error), render func(T) J, idOf func(T) string) error {
	after, limit, err := listParams(c, kind)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	records, more, err := list(ctx, after, limit)
	if err != nil {
		return err
	}
	out := make([]J, len(records))
	for i, r := range records {
		out[i] = render(r)
	}
	var next *string
	if more {
		next = ptr(encodeRecordCursor(kind, idOf(records[len(records)-1])))
	}
	items, err := json.Marshal(out)
	if err != nil {
		return err
	}
	cursor, _ := json.Marshal(next)
	b := append(append(append(append([]byte(`{"`), field...), `":`...), items...), `,"next_cursor":`...)
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	return c.Send(append(append(b, cursor...), '}'))
}

// listParams reads limit and cursor of a listing.
func listParams(c *fiber.Ctx, kind RecordKind) (after string, limit int, err error) {
	if err := onlyParams(c, "limit", "cursor"); err != nil {
		return "", 0, err
	}
	if limit, err = parseLimit(c.Query("limit")); err != nil {
		return "", 0, err
	}
	if v := c.Query("cursor"); v != "" {
		if after, err = decodeRecordCursor(v, kind); err != nil {
			return "", 0, err
		}
	}
	return after, limit, nil
}

// deleteUser deletes the user and every checkin of the user, through the
// user's grain (it first lets the checkins being written finish).
func (s *Server) deleteUser(c *fiber.Ctx) error {
	id, err := pathID(c, "user id")
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	if err := s.grains.DeleteUser(ctx, id); err != nil {
		// Not found: whatever was left of one is gone too. Any other
		// failure (a timeout, a store that became unavailable) may have
		// come after part of the delete was applied.
		s.changed(KindUserDeleted, id)
		return err
	}
	s.changed(KindUserDeleted, id)
	return c.SendStatus(http.StatusNoContent)
}

// deleteLocation deletes a location. Checkins made there stay, with its id;
// new checkins there are refused as at any unknown location.
func (s *Server) deleteLocation(c *fiber.Ctx) error {
	id, err := pathID(c, "location id")
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	if err := s.store.DeleteLocation(ctx, id); err != nil {
		s.changedUnlessRefused(KindLocation, id, err)
		if errors.Is(err, persistence.ErrNotFound) {
			return notFound("location_not_found", "location "+id+" does not exist")
		}
		return err
	}
	s.changed(KindLocation, id)
	return c.SendStatus(http.StatusNoContent)
}

// updateLocation changes any of a location's name and coordinates. The id
// and creation time never change. Current-location answers embed the
// location as it is now, whenever the checkin was made.
func (s *Server) updateLocation(c *fiber.Ctx) error {
	id, err := pathID(c, "location id")
	if err != nil {
		return err
	}
	var req struct {
		Name *string  `json:"name"`
		Lat  *float64 `json:"lat"`
		Lon  *float64 `json:"lon"`
	}
	body, err := requestBody(c)
	if err != nil {
		return err
	}
	if err := decodePatch(body, &req); err != nil {
		return err
	}
	p := persistence.LocationPatch{Lat: req.Lat, Lon: req.Lon}
	if req.Name != nil {
		if err := checkName(*req.Name); err != nil {
			return err
		}
		p.Name = ptr(strings.TrimSpace(*req.Name))
	}
	if err := checkCoordinates(req.Lat, req.Lon); err != nil {
		return err
	}
	if p.Empty() {
		return badRequest("empty_update", "the body must name a field to change: name, lat or lon")
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	l, err := s.store.UpdateLocation(ctx, id, p)
	if err != nil {
		s.changedUnlessRefused(KindLocation, id, err)
	}
	if errors.Is(err, persistence.ErrNotFound) {
		return notFound("location_not_found", "location "+id+" does not exist")
	}
	if err != nil {
		return err
	}
	s.changed(KindLocation, id)
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	return c.Send(appendLocationJSON(make([]byte, 0, 128), l))
}

// changed drops the cached copy of an updated record here and tells the
// other nodes to drop theirs. The notice gets a copy of id: ids from a
// request's path live in the request's buffer, which the server reuses
// once the request is answered, and a notice is sent after that.
func (s *Server) changed(kind RecordKind, id string) {
	s.records.forget(kind, id)
	if s.notify != nil {
		s.notify(kind, strings.Clone(id))
	}
}

// changedUnlessRefused follows a write of a record that failed with err.
// A write that timed out or found the store unavailable may have been
// applied all the same: the record changed (a cached copy of it as it was
// would be served until cache.ttl, and a deleted location would even take
// checkins). It may also be applied later, after a read in between cached
// the record as it was: so the copies are dropped again after
// lateWriteWindow. A record the store did not find is gone: its copy here
// is dropped, without telling the other nodes. An invalid write, or one
// refused before it reached the store (ErrNotApplied), changed nothing.
func (s *Server) changedUnlessRefused(kind RecordKind, id string, err error) {
	switch {
	case errors.Is(err, persistence.ErrInvalid), errors.Is(err, persistence.ErrNotApplied):
	case errors.Is(err, persistence.ErrNotFound):
		s.records.forget(kind, id)
	default:
		s.changed(kind, id)
		id := strings.Clone(id) // the request's buffer is reused before the timer fires
		time.AfterFunc(s.lateWriteWindow(), func() {
			if !s.closed.Load() {
				s.changed(kind, id)
			}
		})
	}
}

// lateWriteWindow is how long after a record write that may have been
// applied its cached copies are dropped once more: twice the request
// timeout, by which a write still in flight when its request gave up has
// usually landed or failed (a store that holds it longer is a stuck disk,
// which makes the node not ready, or a CQL replica that applies it from a
// hint; then cache.ttl bounds the old copy's life).
func (s *Server) lateWriteWindow() time.Duration { return 2 * s.cfg.RequestTimeout }

func ptr[T any](v T) *T { return &v }

func (s *Server) createLocation(c *fiber.Ctx) error {
	var req struct {
		ID   *string  `json:"id"`
		Name *string  `json:"name"`
		Lat  *float64 `json:"lat"`
		Lon  *float64 `json:"lon"`
	}
	body, err := requestBody(c)
	if err != nil {
		return err
	}
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	l := persistence.Location{ID: newID(), CreatedAt: persistence.Millis(s.now())}
	if req.ID != nil {
		if err := checkID("id", *req.ID); err != nil {
			return err
		}
		l.ID = *req.ID
	}
	if req.Name == nil {
		return badRequest("invalid_name", "name is required")
	}
	if err := checkName(*req.Name); err != nil {
		return err
	}
	if req.Lat == nil || req.Lon == nil {
		return badRequest("invalid_coordinates", "lat and lon are required")
	}
	if err := checkCoordinates(req.Lat, req.Lon); err != nil {
		return err
	}
	l.Name, l.Lat, l.Lon = strings.TrimSpace(*req.Name), *req.Lat, *req.Lon
	ctx, cancel := s.ctx(c)
	defer cancel()
	g := s.records.gen.Load()
	if err := s.store.CreateLocation(ctx, l); err != nil {
		if errors.Is(err, persistence.ErrConflict) {
			return &apiError{status: http.StatusConflict, code: "location_exists", msg: "location " + l.ID + " already exists"}
		}
		return err
	}
	s.records.putLocation(g, l)
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	return c.Status(http.StatusCreated).Send(appendLocationJSON(make([]byte, 0, 128), l))
}

func (s *Server) getLocation(c *fiber.Ctx) error {
	id, err := pathID(c, "location id")
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	b, err := s.records.appendLocation(ctx, make([]byte, 0, 128), id)
	if errors.Is(err, persistence.ErrNotFound) {
		return notFound("location_not_found", "location "+id+" does not exist")
	}
	if err != nil {
		return err
	}
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	return c.Send(b)
}

func (s *Server) checkin(c *fiber.Ctx) error {
	userID, err := pathID(c, "user id")
	if err != nil {
		return err
	}
	var req checkinBody
	body, err := requestBody(c)
	if err != nil {
		return err
	}
	if err := req.decode(body); err != nil {
		return err
	}
	now := s.now()
	ci := persistence.Checkin{UserID: userID, Timestamp: persistence.Millis(now)}
	if req.ID != nil {
		if err := checkID("id", *req.ID); err != nil {
			return err
		}
		ci.ID = *req.ID
	} else {
		ci.ID = newID()
	}
	if req.LocationID == nil {
		return badRequest("invalid_id", "location_id is required")
	}
	if err := checkID("location_id", *req.LocationID); err != nil {
		return err
	}
	ci.LocationID = *req.LocationID
	if req.Timestamp != nil {
		if ci.Timestamp, err = parseTime("timestamp", *req.Timestamp); err != nil {
			return err
		}
		if ci.Timestamp.After(now.Add(maxFuture)) {
			return badRequest("timestamp_in_future", fmt.Sprintf("timestamp must not be more than %s in the future", maxFuture))
		}
	}
	// The user's grain knows whether the user exists and answers
	// user_not_found itself, so the edge checks only the location. Usually
	// it is cached and the grain call, which bounds itself by the request
	// timeout, is the only wait: no deadline is made up front. A location
	// read from the store starts the request's one; the user is checked
	// first then, so a request naming neither gets user_not_found either
	// way.
	ctx := c.UserContext()
	if !s.records.locationCached(ci.LocationID) {
		var cancel context.CancelFunc
		ctx, cancel = s.ctx(c)
		defer cancel()
		if err := s.userExists(ctx, userID); err != nil {
			return err
		}
		if err := s.records.hasLocation(ctx, ci.LocationID); err != nil {
			if errors.Is(err, persistence.ErrNotFound) {
				return notFound("location_not_found", "location "+ci.LocationID+" does not exist")
			}
			return err
		}
	}
	stored, created, err := s.grains.Checkin(ctx, ci, req.Timestamp != nil, req.ID != nil)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	buf := answers.Get().(*[]byte)
	defer answers.Put(buf)
	*buf = appendCheckinJSON((*buf)[:0], stored)
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	c.Status(status).Response().SetBody(*buf) // a copy: see currentLocation
	return nil
}

func (s *Server) currentLocation(c *fiber.Ctx) error {
	userID, err := pathID(c, "user id")
	if err != nil {
		return err
	}
	// No request deadline made up front: the common case reads only memory
	// (the grain's published state and the location cache); the grain call
	// and a store read each bound themselves by the request timeout.
	ctx := c.UserContext()
	cur, err := s.grains.CurrentLocation(ctx, userID)
	if err != nil {
		return err
	}
	buf := answers.Get().(*[]byte)
	defer answers.Put(buf)
	b := appendCurrentHead((*buf)[:0], cur)
	b, err = s.records.appendLocation(ctx, b, cur.LocationID)
	if errors.Is(err, persistence.ErrNotFound) {
		b, err = append(b, "null"...), nil // the location was deleted; the checkin stays
	}
	*buf = b
	if err != nil {
		return err
	}
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	// SetBody copies into the response's own buffer. (Fiber's Send keeps
	// the slice until the response is written, after this buffer is back in
	// the pool: concurrent reads then answered with each other's bodies.)
	c.Response().SetBody(append(b, '}'))
	return nil
}

// answers are buffers the hottest read and checkins render into before
// SetBody copies the answer into the response.
var answers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendCurrentHead encodes the current-location answer (currentJSON) by
// hand up to its location object: it is the hottest read. Ids need no
// escaping (validID).
func appendCurrentHead(b []byte, cur persistence.Checkin) []byte {
	b = append(append(b, `{"user_id":"`...), cur.UserID...)
	b = append(append(b, `","location_id":"`...), cur.LocationID...)
	b = appendTime(append(b, `","timestamp":"`...), cur.Timestamp)
	b = append(append(b, `","checkin_id":"`...), cur.ID...)
	return append(b, `","location":`...)
}

// appendLocationJSON encodes a location (locationJSON) by hand.
func appendLocationJSON(b []byte, l persistence.Location) []byte {
	b = append(append(b, `{"id":"`...), l.ID...)
	b = appendJSONString(append(b, `","name":`...), l.Name)
	b = appendJSONFloat(append(b, `,"lat":`...), l.Lat)
	b = appendJSONFloat(append(b, `,"lon":`...), l.Lon)
	b = appendTime(append(b, `,"created_at":"`...), l.CreatedAt)
	return append(b, `"}`...)
}

// appendCheckinJSON encodes a checkin (checkinJSON) by hand: it answers every
// write. Ids need no escaping (validID).
func appendCheckinJSON(b []byte, ci persistence.Checkin) []byte {
	b = append(append(b, `{"id":"`...), ci.ID...)
	b = append(append(b, `","user_id":"`...), ci.UserID...)
	b = append(append(b, `","location_id":"`...), ci.LocationID...)
	b = appendTime(append(b, `","timestamp":"`...), ci.Timestamp)
	return append(b, `"}`...)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// appendJSONFloat appends f as encoding/json would for coordinates.
func appendJSONFloat(b []byte, f float64) []byte {
	if a := math.Abs(f); a != 0 && a < 1e-6 {
		j, _ := json.Marshal(f) // exponent form, rare
		return append(b, j...)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

// getCheckin answers one checkin of a user by its id, straight from the
// store: a client that lost the answer to its POST learns whether the
// checkin is stored without sending it again.
func (s *Server) getCheckin(c *fiber.Ctx) error {
	userID, checkinID, err := checkinPath(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	if err := s.userExists(ctx, userID); err != nil {
		return err
	}
	ci, err := s.store.GetCheckin(ctx, userID, checkinID)
	if errors.Is(err, persistence.ErrNotFound) {
		return notFound("checkin_not_found", "user "+userID+" has no checkin "+checkinID)
	}
	if err != nil {
		return err
	}
	return c.JSON(toCheckinJSON(ci))
}

// deleteCheckin deletes one checkin through the user's grain, which moves
// the current location back when it was the current one.
func (s *Server) deleteCheckin(c *fiber.Ctx) error {
	userID, checkinID, err := checkinPath(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	if _, err := s.grains.DeleteCheckin(ctx, userID, checkinID); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

// checkinPath returns the user id and the checkin id of a path
// /users/:id/checkins/:checkin_id, or why they are not valid.
func checkinPath(c *fiber.Ctx) (userID, checkinID string, err error) {
	if userID, err = pathID(c, "user id"); err != nil {
		return "", "", err
	}
	checkinID = c.Params("checkin_id")
	if err := checkID("checkin id", checkinID); err != nil {
		return "", "", err
	}
	return userID, checkinID, nil
}

func (s *Server) listCheckins(c *fiber.Ctx) error {
	userID, err := pathID(c, "user id")
	if err != nil {
		return err
	}
	if err := onlyParams(c, "location_id", "from", "to", "limit", "order", "cursor"); err != nil {
		return err
	}
	q := persistence.Query{UserID: userID, From: minTime, To: persistence.Millis(s.now().Add(maxFuture)).Add(time.Millisecond)}
	if v := c.Query("location_id"); v != "" {
		if err := checkID("location_id", v); err != nil {
			return err
		}
		q.LocationID = v
	}
	if v := c.Query("from"); v != "" {
		if q.From, err = parseBound("from", v); err != nil {
			return err
		}
	}
	if v := c.Query("to"); v != "" {
		if q.To, err = parseBound("to", v); err != nil {
			return err
		}
	}
	if !q.From.Before(q.To) {
		return badRequest("invalid_range", "from must be before to")
	}
	if q.Limit, err = parseLimit(c.Query("limit")); err != nil {
		return err
	}
	switch c.Query("order") {
	case "", "newest":
		q.Order = persistence.NewestFirst
	case "oldest":
		q.Order = persistence.OldestFirst
	default:
		return badRequest("invalid_order", "order must be newest or oldest")
	}
	if v := c.Query("cursor"); v != "" {
		if q.After, err = decodeCursor(v, q); err != nil {
			return err
		}
	}
	ctx, cancel := s.ctx(c)
	defer cancel()
	if err := s.userExists(ctx, userID); err != nil {
		return err
	}
	page, err := s.store.ListCheckins(ctx, q)
	if err != nil {
		return err
	}
	out := pageJSON{Checkins: make([]checkinJSON, len(page.Checkins))}
	for i, ci := range page.Checkins {
		out.Checkins[i] = toCheckinJSON(ci)
	}
	if page.Next != nil {
		cur := encodeCursor(q, *page.Next)
		out.NextCursor = &cur
	}
	return c.JSON(out)
}

// onlyParams refuses a query parameter the route does not take, or one
// given twice: a misspelt filter would otherwise answer, unfiltered, what
// looks like a right answer.
func onlyParams(c *fiber.Ctx, names ...string) error {
	seen := 0 // bit i: names[i] was given
	for key := range c.Request().URI().QueryArgs().All() {
		i := slices.Index(names, string(key))
		switch {
		case i < 0:
			return badRequest("unknown_parameter", fmt.Sprintf("unknown query parameter %q; this route takes %s", clip(key), strings.Join(names, ", ")))
		case seen&(1<<i) != 0:
			return badRequest("repeated_parameter", fmt.Sprintf("query parameter %q given more than once", key))
		}
		seen |= 1 << i
	}
	return nil
}

// clip shortens what a client sent to be quoted in an error message.
func clip(b []byte) []byte {
	const most = 64
	if len(b) > most {
		return b[:most]
	}
	return b
}

// requestBody returns the request's body as it was sent. A compressed body
// (Content-Encoding) is refused: unpacked, a body within http.body-limit
// could fill the node's memory.
func requestBody(c *fiber.Ctx) ([]byte, error) {
	if enc := c.Request().Header.ContentEncoding(); len(enc) > 0 && !bytes.EqualFold(bytes.TrimSpace(enc), []byte("identity")) {
		return nil, &apiError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
			msg: fmt.Sprintf("request bodies are taken uncompressed only, not with Content-Encoding %q", clip(enc))}
	}
	return c.Request().Body(), nil
}
