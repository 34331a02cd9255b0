// Package edge is checkin's HTTP API: a Fiber app that validates requests,
// routes writes and current-location reads to the user's grain, serves range
// reads from the store, and maps every error to one JSON shape and status.
//
// Guarantees: bad input gets a 4xx with {"error":{"code","message"}}, never a
// 5xx; a 201/200 on a checkin means the checkin is durable; when the node is
// saturated requests are refused at once with 503 and Retry-After instead of
// queueing, and connections beyond Config.MaxConns are answered so and
// closed (beyond Config.MaxConnsPerIP of one address, with 429); Shutdown stops accepting connections and waits for the requests
// in flight. With API keys (LoadAPIKeys), every /v1 request without one of
// them gets 401; the operations endpoints stay open. With a rate limit, a
// client over it gets 429 and Retry-After before any work. Users and
// locations are cached; an update or delete drops the copy here at once and,
// through Deps.Notify and Forget, on the other nodes, and a read that raced
// it never puts the old record back.
package edge
