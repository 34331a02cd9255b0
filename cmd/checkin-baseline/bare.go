package main

import (
	"github.com/gofiber/fiber/v2"
)

// Canned answers of the bare mode, shaped and sized like checkin's.
const (
	bareCreatedAt  = `2024-05-01T12:00:00.000Z`
	bareLocationID = `bare-location-000001`
	bareCheckinID  = `0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b`
	bareLocation   = `{"id":"` + bareLocationID + `","name":"Bare Location","lat":40.7614,"lon":-73.9776,"created_at":"` + bareCreatedAt + `"}`
)

// bareRoutes answers every route of the API subset at once with a
// same-sized JSON body: no parsing, no store, no actors.
func bareRoutes(app *fiber.App) {
	v1 := app.Group("/v1")
	v1.Post("/users", func(c *fiber.Ctx) error {
		return sendJSON(c, fiber.StatusCreated, `{"id":"bare-user","name":"Bare User","created_at":"`+bareCreatedAt+`"}`)
	})
	v1.Get("/users/:id", func(c *fiber.Ctx) error {
		return sendJSON(c, fiber.StatusOK, `{"id":"`+c.Params("id")+`","name":"Bare User","created_at":"`+bareCreatedAt+`"}`)
	})
	v1.Post("/locations", func(c *fiber.Ctx) error {
		return sendJSON(c, fiber.StatusCreated, bareLocation)
	})
	v1.Get("/locations/:id", func(c *fiber.Ctx) error {
		return sendJSON(c, fiber.StatusOK, bareLocation)
	})
	v1.Post("/users/:id/checkins", func(c *fiber.Ctx) error {
		return sendJSON(c, fiber.StatusCreated, `{"id":"`+bareCheckinID+`","user_id":"`+c.Params("id")+
			`","location_id":"`+bareLocationID+`","timestamp":"`+bareCreatedAt+`"}`)
	})
	v1.Get("/users/:id/checkins", func(c *fiber.Ctx) error {
		return sendJSON(c, fiber.StatusOK, `{"checkins":[],"next_cursor":null}`)
	})
	v1.Get("/users/:id/location", func(c *fiber.Ctx) error {
		return sendJSON(c, fiber.StatusOK, `{"user_id":"`+c.Params("id")+`","location_id":"`+bareLocationID+
			`","timestamp":"`+bareCreatedAt+`","checkin_id":"`+bareCheckinID+`","location":`+bareLocation+`}`)
	})
}

func sendJSON(c *fiber.Ctx, status int, body string) error {
	c.Status(status)
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	return c.SendString(body)
}
