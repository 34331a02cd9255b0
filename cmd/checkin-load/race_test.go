//go:build race

package main

// raceEnabled: this test binary runs with the race detector, so the
// checkin binary under test is built with it too (it shares the race build
// cache and also checks the server for races under load).
const raceEnabled = true
