//go:build !linux

package pebble

import "errors"

// ring is io_uring's sync path, which only Linux has; elsewhere files sync
// the blocking way.
type ring struct{}

var errRingUnusable = errors.New("io_uring unusable")

func newRing() (*ring, error) { return nil, errors.New("io_uring: only on Linux") }

func (*ring) sync(uintptr, bool) error { return errRingUnusable }

func (*ring) handOff() bool { return false }

func (*ring) close() error { return nil }
