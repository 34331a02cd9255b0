// Package messages holds the protobuf messages that cross node boundaries
// in checkin (grain calls between nodes, notices between nodes) and the
// code generated from them. Everything here except generate.go and doc.go is
// generated: edit checkin.proto and run `make proto`.
package messages
